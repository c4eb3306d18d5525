"""Presses on messages of Grafana alerts: the Grafana silence link button asks nothing of
us, and an Alertmanager silence press for a Grafana alert is refused, changing nothing."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from receiver.notify.slack.buttons import (
    ACTIONS_BLOCK_ID,
    GRAFANA_BLOCK_ID,
    GRAFANA_SILENCE_ACTION,
    ActionValue,
)
from receiver.samples import webhook
from receiver.slack_actions.endpoint import ACTIONS_PATH
from receiver.slack_actions.payload import parse_press
from receiver.slack_actions.silence import from_grafana
from tests.fakes.alertmanager import AlertmanagerServer
from tests.slack_actions.support import (
    ALICE,
    WARNING,
    Router,
    press_body,
    signed,
    silences_from,
)
from tests.support import wait_until

STARTS = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)


def _rewrite(body: str, change: Callable[[dict[str, Any]], None]) -> str:
    """A press form with its payload changed by `change`."""
    payload = json.loads(urllib.parse.parse_qs(body)["payload"][0])
    change(payload)
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


def _send(router: Router, body: str) -> httpx.Response:
    return httpx.post(f"{router.url}{ACTIONS_PATH}", content=body, headers=signed(body), timeout=10)


def _link_press(response_url: str) -> str:
    payload = {
        "type": "block_actions",
        "user": ALICE,
        "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": "C1"},
        "response_url": response_url,
        # Slack posts a link button's press too; it has a url and no value.
        "actions": [
            {
                "type": "button",
                "action_id": GRAFANA_SILENCE_ACTION,
                "block_id": ACTIONS_BLOCK_ID,
                "url": "https://grafana.example/alerting/silence/new",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


def test_a_grafana_silence_link_press_is_nothing_of_ours() -> None:
    body = _link_press("https://hooks.slack.example/actions/T0/1/x")

    assert parse_press(body.encode(), {}) is None


def test_a_press_knows_a_grafana_alert_by_its_value_or_its_message() -> None:
    grafana = ActionValue("bot", "fp", STARTS, source="grafana").encode()
    alertmanager = ActionValue("bot", "fp", STARTS).encode()

    def press(value: str, message: dict[str, Any]) -> Any:
        payload = {
            "type": "block_actions",
            "user": ALICE,
            "container": {"message_ts": "1.2", "channel_id": "C1"},
            "message": message,
            "response_url": "https://hooks.slack.example/actions/T0/1/x",
            "actions": [{"action_id": "silence_3600", "value": value}],
        }
        form = urllib.parse.urlencode({"payload": json.dumps(payload)})
        found = parse_press(form.encode(), {})
        assert found is not None
        return found

    marked = {"attachments": [{"blocks": [{"type": "context", "block_id": GRAFANA_BLOCK_ID}]}]}
    assert from_grafana(press(grafana, {"blocks": []}))
    assert from_grafana(press(alertmanager, marked))
    assert not from_grafana(press(alertmanager, {"blocks": [], "attachments": [{"blocks": []}]}))
    assert press(grafana, {}).log_fields()["source"] == "grafana"


def test_silence_press_for_a_grafana_alert_is_refused_and_changes_nothing(
    make_router: Callable[..., Router], alertmanager: AlertmanagerServer
) -> None:
    router = make_router(alertmanager.url)
    router.post(webhook([WARNING], external_url=alertmanager.url))
    message = router.message("HighGPUCost")
    # An old or forged message: an Alertmanager silence button on a Grafana alert.
    body = press_body(router.slack, router.current(message), "silence_3600", ALICE, "1")

    def from_grafana_value(payload: dict[str, Any]) -> None:
        action = payload["actions"][0]
        value = ActionValue.decode(action["value"])
        action["value"] = ActionValue(
            value.destination, value.fingerprint, value.starts_at, source="grafana"
        ).encode()

    answer = _send(router, _rewrite(body, from_grafana_value))

    assert answer.status_code == 200
    wait_until(lambda: bool(router.slack.responses("1")))
    [told] = router.slack.responses("1")
    assert told["response_type"] == "ephemeral"
    assert "Grafana" in told["text"]
    assert silences_from(alertmanager) == []
    assert router.current(message).edits == 0
    assert router.actions("silence", "failure") == 1
    assert router.actions("silence", "success") == 0


def test_a_grafana_silence_link_press_answers_and_does_nothing(
    make_router: Callable[..., Router],
) -> None:
    router = make_router("http://127.0.0.1:9")  # never called: a link press acts on nothing
    body = _link_press(router.slack.response_url("2"))

    answer = _send(router, body)

    assert answer.status_code == 200
    assert router.slack.responses() == []
    for outcome in ("success", "already_done", "failure"):
        assert router.actions("silence", outcome) == 0
    registry = router.server.service.metrics.registry
    for rejection in ("unauthorized", "malformed"):
        labels = {"action": "unknown", "outcome": rejection}
        assert registry.get_sample_value("alert_router_slack_actions_total", labels) == 0
