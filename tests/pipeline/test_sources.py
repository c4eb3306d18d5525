"""Two sources, one router: a Grafana alert and an Alertmanager alert for the same service
both go through the whole pipeline to every destination, each keeping its source."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from receiver.samples import webhook
from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.slack import SlackWebhookServer, strings
from tests.pipeline.router import T0, Router
from tests.support import wait_until

GRAFANA_FIRING = Path(__file__).resolve().parents[1] / "data" / "grafana" / "webhook-firing.json"
SERVICE = "whisper-pyannote-stt"


def test_grafana_and_alertmanager_alerts_for_one_service_are_both_delivered(
    make_router: Callable[..., Router],
    fake_pagerduty: FakePagerDuty,
    slack_webhook: SlackWebhookServer,
) -> None:
    router = make_router(fake_pagerduty)
    grafana = json.loads(GRAFANA_FIRING.read_text())
    for item in grafana["alerts"]:
        item["labels"]["severity"] = "critical"  # the `page` route: PagerDuty and the bot too
    alertmanager = webhook(
        [
            (
                {
                    "alertname": "BudgetThresholdExceeded",
                    "service": SERVICE,
                    "severity": "critical",
                },
                {"summary": f"{SERVICE} has used 92% of its monthly budget"},
            )
        ],
        starts_at=T0,
    )
    assert router.post(grafana)["accepted"] == 1
    assert router.post(alertmanager)["accepted"] == 1

    # PagerDuty: one trigger per alert, each saying where it came from.
    wait_until(lambda: len(fake_pagerduty.events) == 2)
    sources = {
        e["payload"]["class"]: e["payload"]["custom_details"]["source"]
        for e in fake_pagerduty.events
    }
    assert sources == {"GPUCostPerHourHigh": "grafana", "BudgetThresholdExceeded": "alertmanager"}
    by_class = {e["payload"]["class"]: e for e in fake_pagerduty.events}
    assert by_class["GPUCostPerHourHigh"]["payload"]["custom_details"]["query_values"] == {
        "A": 61.5,
        "B": 61.5,
        "C": 1.0,
    }
    assert "query_values" not in by_class["BudgetThresholdExceeded"]["payload"]["custom_details"]

    # Slack (incoming webhook): one message each; Grafana's shows its query values.
    wait_until(lambda: len(slack_webhook.delivered) == 2)
    texts = [" ".join(strings(message)) for message in slack_webhook.messages]
    [from_grafana] = [t for t in texts if "GPUCostPerHourHigh" in t]
    [from_alertmanager] = [t for t in texts if "BudgetThresholdExceeded" in t]
    assert "A = 61.5" in from_grafana
    assert "Grafana" in from_grafana
    assert "A = 61.5" not in from_alertmanager
    wait_until(router.idle)
    assert (
        router.metric("alert_router_alerts_received_total", outcome="accepted", source="grafana")
        == 1
    )
    assert (
        router.metric(
            "alert_router_alerts_received_total", outcome="accepted", source="alertmanager"
        )
        == 1
    )
