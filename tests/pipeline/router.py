"""alert-router in-process with real notifiers, for the pipeline's tests: the rules, the
router handle and alert builders."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from tests.fakes.slack import (
    SlackWebhookServer,
    strings,
)
from tests.service import TOKEN, ServerThread

AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = datetime(2026, 11, 29, 2, 39, 35, 178000, tzinfo=UTC)
RULES = """
destinations:
  hook: {slack: {webhook_url: {secret: slack-webhook-url}, max_per_second: %(slack_rate)s}}
  bot: {slack: {token: {secret: slack-bot-token}, channel: "#gpu-costs", max_per_second: 0}}
  pd: {pagerduty: {routing_key: {secret: pagerduty-key}, max_per_minute: 0}}
routes:
  - name: page
    matchers: ['severity="critical"']
    to: [pd, bot]
    continue: true
  - name: everything
    to: [hook]
"""


class Router:
    """alert-router in-process on a loopback port, with real notifiers."""

    def __init__(self, server: ServerThread) -> None:
        self.server = server

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        r = httpx.post(f"{self.server.url}/alerts", json=body, headers=AUTH, timeout=30)
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        return answer

    def metric(self, name: str, **labels: str) -> float:
        value = self.server.service.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def depths(self) -> dict[str, int]:
        result: dict[str, int] = self.server.call(self.server.service.store.depths)
        return result

    def idle(self) -> bool:
        d = self.depths()
        return d["inbox"] == 0 and d["outbox"] == 0


def alert(
    name: str, severity: str = "warning", **labels: str
) -> tuple[dict[str, str], dict[str, str]]:
    return (
        {"alertname": name, "severity": severity, "service": "svc", **labels},
        {"summary": f"{name} summary"},
    )


def resolved(body: dict[str, Any]) -> dict[str, Any]:
    end = "2026-11-29T03:00:00.000Z"
    return {
        **body,
        "status": "resolved",
        "alerts": [{**a, "status": "resolved", "endsAt": end} for a in body["alerts"]],
    }


def hook_alertnames(slack_webhook: SlackWebhookServer) -> list[str]:
    """The alertnames named by each message the webhook accepted."""
    names: list[str] = []
    for message in slack_webhook.messages:
        text = " ".join(strings(message))
        names.extend(n for n in ("GPU-A", "GPU-B", "GPU-C") if n in text)
    return names
