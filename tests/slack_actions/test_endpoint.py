"""The endpoint: body limits, Slack's 3 seconds, metrics, logs, shutdown, the wired service."""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from receiver.metrics import Metrics
from receiver.models import (
    Alert,
    labels_fingerprint,
)
from receiver.notify.pagerduty.notifier import dedup_key
from receiver.samples import webhook
from receiver.slack_actions.endpoint import ACTIONS_PATH, MAX_BODY_BYTES
from receiver.slack_actions.verify import SIGNING_SECRET
from tests.fakes.alertmanager import (
    AlertmanagerServer,
)
from tests.fakes.pagerduty import ROUTING_KEY, FakePagerDuty
from tests.fakes.slack import (
    BOT_TOKEN,
    SlackApiServer,
    SlackWebhookServer,
)
from tests.service import FAST, make_settings, start_service
from tests.slack_actions.support import (
    CRITICAL,
    RULES,
    SIGNING,
    WARNING,
    Router,
    button_ids,
    signed,
    silences_from,
)
from tests.support import HangingServer, wait_until


def test_oversized_and_malformed_requests(
    make_router: Callable[..., Router], alertmanager: AlertmanagerServer
) -> None:
    router = make_router(alertmanager.url)
    url = f"{router.url}{ACTIONS_PATH}"
    huge = "payload=" + "x" * MAX_BODY_BYTES
    assert httpx.post(url, content=huge, headers=signed(huge), timeout=10).status_code == 413
    for body in ("payload=not-json", "other=1", "payload=" + urllib.parse.quote('{"type": 1}')):
        answer = httpx.post(url, content=body, headers=signed(body), timeout=10)
        assert answer.status_code in (200, 400), answer.text
    bad_value = "payload=" + urllib.parse.quote(
        json.dumps(
            {
                "type": "block_actions",
                "actions": [{"action_id": "silence_3600", "value": "{}"}],
                "response_url": router.slack.response_url(),
            }
        )
    )
    answer = httpx.post(url, content=bad_value, headers=signed(bad_value), timeout=10)
    assert answer.status_code == 400
    assert router.actions("unknown", "malformed") == 4
    assert silences_from(alertmanager) == []


def test_action_series_start_at_zero() -> None:
    metrics = Metrics(CollectorRegistry())
    for action in ("silence", "acknowledge"):
        for outcome in ("success", "already_done", "failure"):
            labels = {"action": action, "outcome": outcome}
            value = metrics.registry.get_sample_value("alert_router_slack_actions_total", labels)
            assert value == 0.0
    for outcome in ("unauthorized", "malformed"):
        labels = {"action": "unknown", "outcome": outcome}
        assert metrics.registry.get_sample_value("alert_router_slack_actions_total", labels) == 0


def test_a_hanging_alertmanager_still_gets_slack_its_answer_in_time(
    make_router: Callable[..., Router],
) -> None:
    hanging = HangingServer()
    try:
        router = make_router(hanging.url, timeout="4s")
        router.post(webhook([WARNING], external_url=hanging.url))
        message = router.message("HighGPUCost")

        started = time.monotonic()
        answer = router.press(message, "silence_3600")
        assert answer.status_code == 200
        assert time.monotonic() - started < 3  # Slack: answer within 3 seconds

        wait_until(lambda: len(router.slack.responses()) == 1, timeout=10)
        assert "did not answer within 4s" in router.slack.responses()[0]["text"]
        assert router.current(message).edits == 0
    finally:
        hanging.close()


def test_actions_are_logged_with_who_what_and_which_alert(
    make_router: Callable[..., Router],
    alertmanager: AlertmanagerServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    router = make_router(alertmanager.url)
    router.post(webhook([WARNING], external_url=alertmanager.url))
    message = router.message("HighGPUCost")
    router.press(message, "silence_3600")
    wait_until(lambda: any(r.getMessage() == "slack action" for r in caplog.records))
    record = next(r for r in caplog.records if r.getMessage() == "slack action")
    fields = record.__dict__
    assert fields["action"] == "silence"
    assert fields["outcome"] == "success"
    assert fields["user"] == "alice"
    assert fields["user_id"] == "U0ALICE01"
    assert fields["alertname"] == "HighGPUCost"
    assert fields["fingerprint"] == labels_fingerprint(WARNING[0])
    assert fields["duration"] == "1h"
    assert fields["silence_id"] == silences_from(alertmanager)[0]["id"]
    for secret in (SIGNING, BOT_TOKEN, ROUTING_KEY):
        assert secret not in caplog.text


def test_the_wired_service_acts_end_to_end(
    tmp_path: Path,
    slack_api: SlackApiServer,
    slack_webhook: SlackWebhookServer,
    fake_pagerduty: FakePagerDuty,
    alertmanager: AlertmanagerServer,
) -> None:
    """The service exactly as receiver.runtime builds it: passes once receiver/app.py
    serves actions_route and receiver/notify/factory.py gives bot notifiers buttons."""
    config = tmp_path / "routes.yaml"
    config.write_text(RULES % {"am": alertmanager.url, "timeout": "1s"})
    settings = make_settings(
        tmp_path, config, slack_api_url=slack_api.api_url, pagerduty_events_url=fake_pagerduty.url
    )
    for key, value in (
        ("slack-webhook-url", slack_webhook.url),
        ("slack-bot-token", BOT_TOKEN),
        ("pagerduty-key", ROUTING_KEY),
        (SIGNING_SECRET, SIGNING),
    ):
        (settings.secrets_dir / key).write_text(value)
    server, _ = start_service(settings, dry_run=False, tuning=FAST)
    try:
        router = Router(server, slack_api)
        body = webhook([CRITICAL], external_url=alertmanager.url)
        router.post(body)
        message = router.message("BudgetThresholdExceeded")
        assert button_ids(message), "no buttons: wire slack_buttons into notify/factory.py"
        key = dedup_key(Alert.from_json(body["alerts"][0]))
        wait_until(lambda: fake_pagerduty.incident(key) is not None)
        wait_until(lambda: server.call(lambda: server.service.store.depths())["outbox"] == 0)

        answer = router.press(message, "silence_3600")
        assert answer.status_code == 200, "wire actions_route into Service.app in app.py"
        wait_until(lambda: len(silences_from(alertmanager)) == 1)
        assert router.press(message, "acknowledge").status_code == 200
        wait_until(lambda: fake_pagerduty.events[-1]["event_action"] == "acknowledge")
        wait_until(lambda: router.current(message).edits == 2)
        text = router.current(message).all_text()
        assert "Silenced" in text and "Acknowledged" in text
        metrics = httpx.get(f"{router.url}/metrics", timeout=5).text
        assert 'alert_router_slack_actions_total{action="silence",outcome="success"} 1.0' in metrics
    finally:
        server.stop()


def test_a_press_in_flight_at_shutdown_is_finished_first(
    make_router: Callable[..., Router],
) -> None:
    hanging = HangingServer()
    try:
        router = make_router(hanging.url, timeout="4s")
        router.post(webhook([WARNING], external_url=hanging.url))
        message = router.message("HighGPUCost")
        answer = router.press(message, "silence_3600")
        assert answer.status_code == 200  # answered in time; the press goes on
        assert router.slack.responses() == []
        router.server.stop()
        # Shutdown waited for the press to end (Alertmanager's 4 s timeout): the presser
        # is told, rather than the work being dropped half-done.
        assert len(router.slack.responses()) == 1
        assert "did not answer within 4s" in router.slack.responses()[0]["text"]
        assert router.current(message).edits == 0
    finally:
        hanging.close()
