"""PagerDuty events of a Grafana alert beside an Alertmanager one: source, query values,
valueString, the Grafana links and the "View in" link."""

from __future__ import annotations

import math
from dataclasses import replace

from receiver.models import Alert, GrafanaFields
from receiver.notify.pagerduty.events import MAX_EVENT_BYTES, trigger_event
from receiver.notify.pagerduty.notifier import PagerDutyNotifier
from tests.fakes.pagerduty import ROUTING_KEY, FakePagerDuty
from tests.notify.pagerduty.support import details_of, make_alert, make_notification, send

GRAFANA = "https://grafana.example.com"
RULE = f"{GRAFANA}/alerting/grafana/ddk3f/view?orgId=1"
DASHBOARD = f"{GRAFANA}/d/gpu-costs?orgId=1"
PANEL = f"{GRAFANA}/d/gpu-costs?orgId=1&viewPanel=4"
VALUE_STRING = "[ var='A' labels={service=llm-inference} value=61.5 ]"


def grafana_alert(**fields: object) -> Alert:
    defaults: dict[str, object] = {
        "values": {"A": 61.5, "B": 0.1 + 0.2},
        "value_string": VALUE_STRING,
        "dashboard_url": DASHBOARD,
        "panel_url": PANEL,
        "silence_url": f"{GRAFANA}/alerting/silence/new",
        "org_id": 1,
    }
    grafana = GrafanaFields(**{**defaults, **fields})  # type: ignore[arg-type]
    return replace(make_alert(), grafana=grafana, generator_url=RULE, external_url=GRAFANA)


def test_grafana_and_alertmanager_events_side_by_side() -> None:
    am = trigger_event(make_notification(make_alert()), ROUTING_KEY, "warning").event
    gf = trigger_event(make_notification(grafana_alert()), ROUTING_KEY, "warning").event

    am_details = am["payload"]["custom_details"]
    assert am_details["source"] == "alertmanager"
    assert "query_values" not in am_details
    assert "value_string" not in am_details
    # Alertmanager's links and "View in" are what they were.
    assert [link["text"] for link in am["links"]] == ["Prometheus graph", "Runbook", "Dashboard"]
    assert am["client_url"] == "http://alertmanager.monitoring.svc:9093"

    details = gf["payload"]["custom_details"]
    assert details["source"] == "grafana"
    assert details["query_values"] == {"A": 61.5, "B": 0.1 + 0.2}
    assert details["value_string"] == VALUE_STRING
    assert gf["links"] == [
        {"href": RULE, "text": "Grafana alert rule"},
        {"href": "https://runbooks.example.com/gpu/high-cost", "text": "Runbook"},
        {"href": "https://grafana.example.com/d/gpu-costs", "text": "Dashboard"},
        {"href": DASHBOARD, "text": "Grafana dashboard"},
        {"href": PANEL, "text": "Grafana panel"},
    ]
    assert gf["client_url"] == DASHBOARD


def test_a_dashboard_link_is_not_repeated() -> None:
    alert = grafana_alert(dashboard_url="https://grafana.example.com/d/gpu-costs")

    event = trigger_event(make_notification(alert), ROUTING_KEY, "warning").event

    hrefs = [link["href"] for link in event["links"]]
    assert hrefs.count("https://grafana.example.com/d/gpu-costs") == 1
    assert "Grafana panel" in [link["text"] for link in event["links"]]


def test_client_url_falls_back_to_the_rule_then_grafana() -> None:
    no_dashboard = grafana_alert(dashboard_url="", panel_url="")
    event = trigger_event(make_notification(no_dashboard), ROUTING_KEY, "warning").event
    assert event["client_url"] == RULE

    bare = replace(no_dashboard, generator_url="")
    event = trigger_event(make_notification(bare), ROUTING_KEY, "warning").event
    assert event["client_url"] == GRAFANA


def test_non_finite_query_values_are_null() -> None:
    alert = grafana_alert(values={"A": math.nan, "B": math.inf, "C": 2.0})

    event = trigger_event(make_notification(alert), ROUTING_KEY, "warning").event

    # JSON has no NaN or infinity: PagerDuty would refuse the event.
    assert event["payload"]["custom_details"]["query_values"] == {"A": None, "B": None, "C": 2.0}


def test_huge_grafana_fields_are_shrunk_below_512_kb() -> None:
    alert = grafana_alert(
        value_string="v" * 600_000, values={f"ref_{i:06d}": float(i) for i in range(40_000)}
    )

    fitted = trigger_event(make_notification(alert), ROUTING_KEY, "warning")

    assert fitted.shrunk is True
    assert fitted.size <= MAX_EVENT_BYTES
    assert fitted.event["payload"]["custom_details"]["source"] == "grafana"


def test_grafana_trigger_is_accepted_by_pagerduty(
    notifier: PagerDutyNotifier, fake_pagerduty: FakePagerDuty
) -> None:
    send(notifier, make_notification(grafana_alert()))

    assert fake_pagerduty.requests[0].status == 202
    details = details_of(fake_pagerduty)
    assert details["source"] == "grafana"
    assert details["query_values"] == {"A": 61.5, "B": 0.1 + 0.2}
