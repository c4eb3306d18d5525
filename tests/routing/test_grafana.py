"""`when:` on a Grafana alert's query values (`grafana.A`), beside cost context."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from receiver.config.rules import Rules, parse_rules
from receiver.models import Alert, GrafanaFields
from receiver.routing.routes import condition_values, route_alert
from receiver.routing.ruletest import RuleTestError, run_rule_tests

RULES = """
destinations:
  slack: {slack: {webhook_url: {secret: slack-webhook-url}}}
  pager: {pagerduty: {routing_key: {secret: pagerduty-key}}}
context:
  cost_per_hour: {query: 'sum by (service) (service_cost_per_hour)', unit: usd_per_hour}
routes:
  - name: hot-gpu
    matchers: ['alertname="GPUCostPerHourHigh"']
    when: {grafana.A: "> 60"}
    to: [pager]
    continue: true
  - name: dear
    when: {cost_per_hour: "> 100", grafana.A: "> 0"}
    to: [pager]
  - name: cost
    matchers: ['alertname="GPUCostPerHourHigh"']
    to: [slack]
default: slack
"""
LABELS = {"alertname": "GPUCostPerHourHigh", "service": "whisper-pyannote-stt"}


@pytest.fixture(scope="module")
def rules() -> Rules:
    return parse_rules(RULES, Path("routes.yaml"))


def _alert(values: dict[str, float] | None) -> Alert:
    return Alert(
        fingerprint="c6eadffa33fcdf37",
        status="firing",
        labels=LABELS,
        annotations={},
        starts_at=datetime(2024, 5, 14, 7, 51, 3, tzinfo=UTC),
        grafana=None if values is None else GrafanaFields(values=values),
    )


def test_condition_values_add_grafanas_query_values() -> None:
    alert = _alert({"A": 61.5, "C": 1.0})
    assert condition_values(alert, {"cost_per_hour": 12.0}) == {
        "cost_per_hour": 12.0,
        "grafana.A": 61.5,
        "grafana.C": 1.0,
    }
    # An Alertmanager alert: the cost context alone.
    assert condition_values(_alert(None), {"cost_per_hour": 12.0}) == {"cost_per_hour": 12.0}


@pytest.mark.parametrize(
    ("values", "context", "expected"),
    [
        # Query value A over the threshold: paged, and continue reaches the label route.
        ({"A": 61.5}, {}, ["pager", "slack"]),
        # Under it: only the label route.
        ({"A": 42.0}, {}, ["slack"]),
        # The boundary: "> 60" is strict.
        ({"A": 60.0}, {}, ["slack"]),
        # Grafana sent no value for A: the condition does not match, as a missing context value.
        ({"B": 99.0}, {}, ["slack"]),
        # An Alertmanager alert of the same labels has no Grafana values at all.
        (None, {}, ["slack"]),
        # A Grafana value and a cost-context value in one route: both must hold.
        ({"A": 1.0}, {"cost_per_hour": 120.0}, ["pager"]),
        (None, {"cost_per_hour": 120.0}, ["slack"]),
    ],
)
def test_when_on_a_grafana_value(
    rules: Rules,
    values: dict[str, float] | None,
    context: dict[str, float],
    expected: list[str],
) -> None:
    alert = _alert(values)
    targets = route_alert(rules, alert.labels, condition_values(alert, context))
    assert [t.destination for t in targets] == expected


def test_rule_tests_take_grafana_values_as_context(rules: Rules, tmp_path: Path) -> None:
    test_file = tmp_path / "grafana-test.yaml"
    test_file.write_text(
        """
tests:
  - name: a hot GPU pages
    alert: {labels: {alertname: GPUCostPerHourHigh, service: s}}
    context: {grafana.A: 61.5}
    expect: {destinations: [pager, slack], routes: [hot-gpu, cost]}
  - name: a cool one does not
    alert: {labels: {alertname: GPUCostPerHourHigh, service: s}}
    context: {grafana.A: 12}
    expect: {destinations: [slack], routes: [cost]}
"""
    )
    report = run_rule_tests(test_file, rules)
    assert report.passed, report.render()


def test_rule_tests_still_refuse_unknown_names(rules: Rules, tmp_path: Path) -> None:
    test_file = tmp_path / "typo.yaml"
    test_file.write_text(
        "tests:\n"
        "  - name: t\n"
        "    alert: {labels: {alertname: X}}\n"
        "    context: {grafanaA: 1}\n"
        "    expect: {destinations: [slack]}\n"
    )
    with pytest.raises(RuleTestError) as caught:
        run_rule_tests(test_file, rules)
    assert caught.value.problems == [
        f"{test_file}:4: tests[0].context.grafanaA: unknown context value 'grafanaA': "
        "the rules define cost_per_hour (a Grafana query value is grafana.<refId>)"
    ]
