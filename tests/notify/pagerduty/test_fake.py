"""The local PagerDuty itself speaks PagerDuty (tests/fakes/pagerduty.py)."""

from __future__ import annotations

import json

import httpx
import pytest

from receiver.config.secrets import SecretStore
from receiver.notify.base import NotifyError
from tests.fakes.pagerduty import ROUTING_KEY, FakePagerDuty
from tests.notify.pagerduty.support import (
    OTHER_KEY,
    SSL_CONTEXT,
    close,
    make_alert,
    make_notification,
    make_notifier,
    send,
)

# -- the fake itself speaks PagerDuty


def post(fake: FakePagerDuty, body: object) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    with httpx.Client(verify=SSL_CONTEXT) as client:
        return client.post(fake.url, content=content, headers={"Content-Type": "application/json"})


def trigger(**overrides: object) -> dict[str, object]:
    event: dict[str, object] = {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": "k1",
        "payload": {"summary": "s", "source": "host", "severity": "critical"},
    }
    event.update(overrides)
    return event


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (trigger(routing_key="abc"), "Length of 'routing_key' is incorrect"),
        (trigger(routing_key="R0ut1ngKey0f32Characters-orTests"), "non-alphanumeric"),
        (trigger(event_action="open"), "'event_action' is invalid"),
        (trigger(payload={"source": "h", "severity": "info"}), "'payload.summary' is missing"),
        (
            trigger(payload={"summary": "s" * 1025, "source": "h", "severity": "info"}),
            "'summary' is too long (maximum is 1024 characters)",
        ),
        (trigger(payload={"summary": "s", "severity": "info"}), "'payload.source' is missing"),
        (trigger(payload={"summary": "s", "source": "h"}), "'payload.severity' is missing"),
        (
            trigger(payload={"summary": "s", "source": "h", "severity": "high"}),
            "'payload.severity' is invalid",
        ),
        (trigger(dedup_key="k" * 256), "'dedup_key' is too long"),
        ({"routing_key": ROUTING_KEY, "event_action": "resolve"}, "'dedup_key' is missing"),
    ],
)
def test_fake_rejects_what_pagerduty_rejects(
    fake_pagerduty: FakePagerDuty,
    event: dict[str, object],
    error: str,
) -> None:
    response = post(fake_pagerduty, event)

    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "invalid event"
    assert body["message"] == "Event object is invalid"
    assert any(error in text for text in body["errors"]), body


def test_fake_rejects_bad_json_and_oversized_events(
    fake_pagerduty: FakePagerDuty,
) -> None:
    assert post(fake_pagerduty, b"{not json").status_code == 400
    big = trigger(payload={"summary": "s", "source": "h", "severity": "info", "x": "y" * 600_000})
    response = post(fake_pagerduty, big)
    assert response.status_code == 400
    assert "maximum" in response.json()["errors"][0]


def test_fake_models_pagerduty_alerts(fake_pagerduty: FakePagerDuty) -> None:
    # Without a dedup_key PagerDuty makes one up and returns it.
    response = post(fake_pagerduty, trigger(dedup_key=None))
    assert response.status_code == 202
    assert response.json()["status"] == "success"
    assert response.json()["message"] == "Event processed"
    assert len(response.json()["dedup_key"]) == 32
    # Resolve from another routing key, or of an unknown alert: accepted but dropped.
    assert post(fake_pagerduty, trigger()).status_code == 202
    other = {"routing_key": OTHER_KEY, "event_action": "resolve", "dedup_key": "k1"}
    unknown = {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "nope"}
    assert post(fake_pagerduty, other).status_code == 202
    assert post(fake_pagerduty, unknown).status_code == 202
    assert len(fake_pagerduty.dropped_events) == 2
    incident = fake_pagerduty.incident("k1")
    assert incident is not None
    assert incident.status == "triggered"
    # Acknowledge, resolve, then a new trigger opens a new alert with the same key.
    for action in ("acknowledge", "resolve"):
        event = {"routing_key": ROUTING_KEY, "event_action": action, "dedup_key": "k1"}
        assert post(fake_pagerduty, event).status_code == 202
    assert incident.actions == ["trigger", "acknowledge", "resolve"]
    assert post(fake_pagerduty, trigger()).status_code == 202
    latest = fake_pagerduty.incident("k1")
    assert latest is not None
    assert latest is not incident
    assert latest.status == "triggered"


def test_flaky_fake_fails_some_and_everything_lands_on_retry(
    flaky_pagerduty: FakePagerDuty,
    secrets: SecretStore,
) -> None:
    pager = make_notifier(flaky_pagerduty.url, secrets)
    failures = 0
    for i in range(30):
        notification = make_notification(make_alert(fingerprint=f"{i:016x}"))
        for _attempt in range(20):
            try:
                send(pager, notification)
                break
            except NotifyError as error:
                assert error.recoverable
                failures += 1
    close(pager)

    assert failures > 0
    assert len(flaky_pagerduty.incidents) == 30
    requests = flaky_pagerduty.requests
    assert [r.received_at for r in requests] == sorted(r.received_at for r in requests)


def test_fake_numbers_the_connections_requests_come_on(fake_pagerduty: FakePagerDuty) -> None:
    with httpx.Client() as client:
        for _ in range(2):
            client.post(fake_pagerduty.url, json=trigger())
    post(fake_pagerduty, trigger())  # a client of its own: a new connection

    assert [r.connection for r in fake_pagerduty.requests] == [1, 1, 2]
    assert fake_pagerduty.connections_opened == 2
    fake_pagerduty.wait_for_closed_connections(2)
