"""The Acknowledge button against the local PagerDuty."""

from __future__ import annotations

from collections.abc import Callable

from receiver.models import (
    Alert,
)
from receiver.notify.pagerduty.notifier import dedup_key
from receiver.samples import webhook
from tests.fakes.alertmanager import (
    AlertmanagerServer,
)
from tests.fakes.pagerduty import ROUTING_KEY, FakePagerDuty
from tests.slack_actions.support import (
    BOB,
    CRITICAL,
    Router,
    button_ids,
    silences_from,
)
from tests.support import wait_until


def test_acknowledge_sends_the_dedup_key_and_shows_who(
    make_router: Callable[..., Router],
    alertmanager: AlertmanagerServer,
    fake_pagerduty: FakePagerDuty,
) -> None:
    router = make_router(alertmanager.url)
    body = webhook([CRITICAL], external_url=alertmanager.url)
    router.post(body)
    message = router.message("BudgetThresholdExceeded")
    alert = Alert.from_json({**body["alerts"][0], "externalURL": alertmanager.url})
    key = dedup_key(alert)
    wait_until(lambda: fake_pagerduty.incident(key) is not None)
    wait_until(
        lambda: router.server.call(lambda: router.server.service.store.depths())["outbox"] == 0
    )

    assert router.press(message, "acknowledge", user=BOB).status_code == 200

    wait_until(lambda: router.current(message).edits == 1)
    acknowledge = fake_pagerduty.events[-1]
    assert acknowledge == {
        "routing_key": ROUTING_KEY,
        "event_action": "acknowledge",
        "dedup_key": key,
    }
    incident = fake_pagerduty.incident(key)
    assert incident is not None and incident.status == "acknowledged"
    edited = router.current(message)
    assert "Acknowledged" in edited.all_text()
    assert "<@U0BOB0001>" in edited.all_text()
    # The Acknowledge button is gone; the silence buttons stay.
    assert button_ids(edited) == ["silence_3600", "silence_14400", "silence_86400"]
    assert router.actions("acknowledge", "success") == 1
    assert silences_from(alertmanager) == []


def test_pagerduty_refusing_the_acknowledge_is_shown_and_nothing_claimed(
    make_router: Callable[..., Router],
    alertmanager: AlertmanagerServer,
    fake_pagerduty: FakePagerDuty,
) -> None:
    router = make_router(alertmanager.url)
    body = webhook([CRITICAL], external_url=alertmanager.url)
    router.post(body)
    message = router.message("BudgetThresholdExceeded")
    key = dedup_key(Alert.from_json(body["alerts"][0]))
    wait_until(lambda: fake_pagerduty.incident(key) is not None)
    wait_until(
        lambda: router.server.call(lambda: router.server.service.store.depths())["outbox"] == 0
    )
    fake_pagerduty.fail(400, body={"status": "invalid event", "message": "Event object is invalid"})

    assert router.press(message, "acknowledge").status_code == 200

    wait_until(lambda: len(router.slack.responses("1")) == 1)
    [told] = router.slack.responses("1")
    assert told["response_type"] == "ephemeral"
    assert told["replace_original"] is False
    assert "Nothing acknowledged" in told["text"]
    assert "HTTP 400" in told["text"]
    assert ROUTING_KEY not in told["text"]
    assert router.current(message).edits == 0
    assert "acknowledge" in button_ids(router.current(message))
    assert router.actions("acknowledge", "failure") == 1
    incident = fake_pagerduty.incident(key)
    assert incident is not None and incident.status == "triggered"


def test_acknowledge_before_pagerduty_was_paged_is_refused(
    make_router: Callable[..., Router],
    alertmanager: AlertmanagerServer,
    fake_pagerduty: FakePagerDuty,
) -> None:
    # PagerDuty refuses the trigger for good (a dead letter): the ledger has no page.
    fake_pagerduty.fail(400)
    router = make_router(alertmanager.url)
    router.post(webhook([CRITICAL], external_url=alertmanager.url))
    message = router.message("BudgetThresholdExceeded")
    wait_until(
        lambda: (
            router.server.call(lambda: router.server.service.store.depths())["dead_letters"] == 1
        )
    )
    requests = len(fake_pagerduty.requests)

    assert router.press(message, "acknowledge").status_code == 200

    wait_until(lambda: len(router.slack.responses()) == 1)
    assert "pd has not been paged for this alert" in router.slack.responses()[0]["text"]
    assert len(fake_pagerduty.requests) == requests
    assert router.current(message).edits == 0
