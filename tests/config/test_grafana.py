"""The rules file's `grafana:` section and `when:` on Grafana's query values."""

from __future__ import annotations

from pathlib import Path

from receiver.config.rules import grafana_ref, parse_rules
from receiver.config.schema import DEFAULT_SIGNATURE_HEADER, GrafanaHmacSpec

DESTINATIONS = "destinations:\n  s: {slack: {webhook_url: {secret: slack-webhook-url}}}\n"


def test_without_a_grafana_section_the_defaults_hold() -> None:
    rules = parse_rules(DESTINATIONS, Path("routes.yaml"))
    assert rules.spec.grafana.hmac == GrafanaHmacSpec()
    assert rules.spec.grafana.hmac.signature_header == DEFAULT_SIGNATURE_HEADER
    # Grafana has no default timestamp header: the signature covers the body alone.
    assert rules.spec.grafana.hmac.timestamp_header is None
    assert "signature_header" not in rules.spec.grafana.hmac.model_fields_set


def test_both_header_names_are_settings() -> None:
    text = DESTINATIONS + (
        "grafana:\n"
        "  hmac:\n"
        "    signature_header: X-Signature\n"
        "    timestamp_header: X-Grafana-Alerting-Signature-Timestamp\n"
    )
    hmac = parse_rules(text, Path("routes.yaml")).spec.grafana.hmac
    assert hmac.signature_header == "X-Signature"
    assert hmac.timestamp_header == "X-Grafana-Alerting-Signature-Timestamp"
    assert "signature_header" in hmac.model_fields_set


def test_a_condition_on_a_grafana_value_needs_no_context_entry() -> None:
    text = DESTINATIONS + (
        "routes:\n"
        "  - name: hot\n"
        "    to: [s]\n"
        "    when: {grafana.A: '> 50', grafana.B_total: '<= 3'}\n"
    )
    rules = parse_rules(text, Path("routes.yaml"))
    [route] = rules.routes
    assert [str(c) for c in route.when] == ["grafana.A > 50", "grafana.B_total <= 3"]
    assert rules.knows_value("grafana.A")
    assert not rules.knows_value("cost_per_hour")
    assert not rules.knows_value("grafana.")


def test_grafana_ref() -> None:
    assert grafana_ref("grafana.A") == "A"
    assert grafana_ref("grafana.query.with.dots") == "query.with.dots"
    assert grafana_ref("grafana.") is None
    assert grafana_ref("cost_per_hour") is None
    assert grafana_ref("grafanaA") is None
