"""The notifier against a local PagerDuty: its answers, the transport, the routing key."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from receiver.config.secrets import SecretStore
from receiver.models import DedupReason
from receiver.notify.base import NotifyError
from receiver.notify.pagerduty.notifier import PagerDutyNotifier, dedup_key
from tests.fakes.pagerduty import ROUTING_KEY, Answer, FakePagerDuty
from tests.notify.pagerduty.support import (
    OTHER_KEY,
    SECRET_NAME,
    close,
    make_alert,
    make_notification,
    make_notifier,
    resolved,
    send,
    send_error,
    write_key,
)
from tests.support import free_port

# -- construction


def test_default_severity_must_be_a_pagerduty_severity(secrets: SecretStore) -> None:
    with pytest.raises(ValueError, match="default_severity"):
        make_notifier("https://events.pagerduty.com/v2/enqueue", secrets, default_severity="high")


def test_events_url_must_be_http(secrets: SecretStore) -> None:
    with pytest.raises(ValueError, match="events_url"):
        make_notifier("events.pagerduty.com/v2/enqueue", secrets)


# -- PagerDuty's answers


def test_invalid_event_is_permanent_with_pagerdutys_errors(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
) -> None:
    fake_pagerduty.fail(
        400,
        body={
            "status": "invalid event",
            "message": "Event object is invalid",
            "errors": ["'payload.severity' is missing or blank", "'payload.source' is missing"],
        },
    )

    error = send_error(notifier, make_notification(make_alert()))

    assert error.recoverable is False
    assert error.retry_after is None
    assert "400" in str(error)
    assert "Event object is invalid" in str(error)
    assert "'payload.severity' is missing or blank" in str(error)
    assert "'payload.source' is missing" in str(error)


def test_routing_key_of_wrong_length_is_permanent(
    fake_pagerduty: FakePagerDuty,
    secrets: SecretStore,
) -> None:
    short_key = "shortkey-not-32"
    write_key(secrets.directory, short_key)
    pager = make_notifier(fake_pagerduty.url, secrets)

    error = send_error(pager, make_notification(make_alert()))
    close(pager)

    assert error.recoverable is False
    assert "Length of 'routing_key' is incorrect (should be 32 characters)" in str(error)
    assert short_key not in str(error)
    assert fake_pagerduty.incidents == []


@pytest.mark.parametrize(
    ("answer", "retry_after"),
    [
        (Answer(429), None),  # PagerDuty usually sends no Retry-After
        (Answer(429, headers={"Retry-After": "7"}), 7.0),  # but honour it when it does
        (Answer(503, headers={"Retry-After": "2.5"}), 2.5),
    ],
)
def test_throttling_is_recoverable_and_honours_retry_after(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
    answer: Answer,
    retry_after: float | None,
) -> None:
    fake_pagerduty.script(answer)

    error = send_error(notifier, make_notification(make_alert()))

    assert error.recoverable is True
    assert error.retry_after == retry_after
    assert len(fake_pagerduty.requests) == 1


def test_retry_after_as_http_date(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    fake_pagerduty.fail(429, headers={"Retry-After": when})

    error = send_error(notifier, make_notification(make_alert()))

    assert error.retry_after is not None
    assert 25 <= error.retry_after <= 31


@pytest.mark.parametrize(
    ("answer", "text"),
    [
        (Answer(401, body={"status": "unauthorized", "message": "Unauthorized"}), "401"),
        (Answer(404, body={"status": "not found", "message": "Not Found"}), "404"),
        (Answer(413, body="Request Entity Too Large"), "413"),
        (Answer(301, body="", headers={"Location": "https://example.com/"}), "redirect"),
    ],
)
def test_other_answers_are_permanent(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
    answer: Answer,
    text: str,
) -> None:
    fake_pagerduty.script(answer)

    error = send_error(notifier, make_notification(make_alert()))

    assert error.recoverable is False
    assert text in str(error)
    assert len(fake_pagerduty.requests) == 1


def test_delivered_after_a_failure_when_the_pipeline_tries_again(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
) -> None:
    fake_pagerduty.fail(502)
    notification = make_notification(make_alert())

    assert send_error(notifier, notification).recoverable
    assert send(notifier, notification) == [{"dedup_key": dedup_key(notification.alert)}]
    assert [r.status for r in fake_pagerduty.requests] == [502, 202]


# -- secrets


def test_rotated_routing_key_is_used_from_the_next_event(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
    secrets: SecretStore,
) -> None:
    send(notifier, make_notification(make_alert(fingerprint="aaaaaaaaaaaaaaaa")))
    write_key(secrets.directory, OTHER_KEY)
    send(notifier, make_notification(make_alert(fingerprint="bbbbbbbbbbbbbbbb")))

    assert [r.routing_key for r in fake_pagerduty.requests] == [ROUTING_KEY, OTHER_KEY]


def test_missing_secret_is_recoverable_and_named(
    fake_pagerduty: FakePagerDuty,
    tmp_path: Path,
) -> None:
    pager = make_notifier(fake_pagerduty.url, SecretStore(tmp_path, environ={}))

    error = send_error(pager, make_notification(make_alert()))
    close(pager)

    assert error.recoverable is True
    assert SECRET_NAME in str(error)
    assert fake_pagerduty.requests == []


# Every way a send can fail; the routing key must show up in none of them.
LEAK_CASES = {
    "invalid event": Answer(
        400, body={"status": "invalid event", "message": "Event object is invalid", "errors": []}
    ),
    # A vendor (or proxy) that echoes the key back: redaction is the safety net.
    "key echoed": Answer(
        400,
        body={
            "status": "invalid event",
            "message": "Event object is invalid",
            "errors": [f"routing_key {ROUTING_KEY} is not enabled"],
        },
    ),
    "key echoed as text": Answer(502, body=f"<html>upstream rejected {ROUTING_KEY}</html>"),
    "throttled": Answer(429, headers={"Retry-After": "1"}),
    "unauthorized": Answer(401, body={"status": "unauthorized"}),
    "redirect": Answer(302, body="", headers={"Location": "https://example.com/"}),
    "server error": Answer(500),
    "bad gateway": Answer(502),
    "unavailable": Answer(503),
    "dropped": Answer(drop=True),
    "timeout": Answer(delay=1.0, process=True),
}


@pytest.mark.parametrize("case", [*LEAK_CASES, "refused", "wrong key length"])
def test_routing_key_leaks_nowhere(
    fake_pagerduty: FakePagerDuty,
    secrets: SecretStore,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    key = ROUTING_KEY
    url = fake_pagerduty.url
    if case == "refused":
        url = f"http://127.0.0.1:{free_port()}/v2/enqueue"
    elif case == "wrong key length":
        key = "ThisKeyIsTooShortForPD"
        write_key(secrets.directory, key)
    else:
        fake_pagerduty.script(LEAK_CASES[case])
    pager = make_notifier(url, secrets, timeout=0.3)

    error = send_error(pager, make_notification(make_alert()))
    close(pager)

    texts = [str(error), repr(error)]
    chained: BaseException | None = error
    while chained is not None:
        texts += [str(chained), repr(chained)]
        chained = chained.__cause__ or chained.__context__
    texts += [record.getMessage() for record in caplog.records]
    texts += [record.exc_text or "" for record in caplog.records]
    texts.append(caplog.text)
    # The structured fields (extra=...) of every record too, not only its message.
    texts += [str(value) for record in caplog.records for value in record.__dict__.values()]
    assert caplog.records, "the client logs its requests at DEBUG; expected some records"
    for text in texts:
        assert key not in text


def test_successful_sends_log_no_routing_key(
    notifier: PagerDutyNotifier,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    alert = make_alert(annotations={"summary": "s", "description": "d" * 600_000})

    send(notifier, make_notification(alert))
    send(notifier, make_notification(resolved(alert), reason=DedupReason.RESOLVED))

    assert any("shrunk" in record.getMessage() for record in caplog.records)
    assert ROUTING_KEY not in caplog.text


# -- acknowledge (the Slack button's)


def test_acknowledge_sends_pagerdutys_acknowledge_on_the_same_connection(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
) -> None:
    alert = make_alert()
    send(notifier, make_notification(alert))

    ref = asyncio.run(notifier.acknowledge(alert))

    key = dedup_key(alert)
    assert ref == {"dedup_key": key}
    assert fake_pagerduty.events[1] == {
        "routing_key": ROUTING_KEY,
        "event_action": "acknowledge",
        "dedup_key": key,
    }
    incident = fake_pagerduty.incident(key)
    assert incident is not None
    assert incident.status == "acknowledged"
    assert {r.connection for r in fake_pagerduty.requests} == {1}


def test_acknowledge_maps_errors_as_notify_does(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
) -> None:
    fake_pagerduty.fail(429, headers={"Retry-After": "3"})

    with pytest.raises(NotifyError) as caught:
        asyncio.run(notifier.acknowledge(make_alert()))

    assert caught.value.recoverable is True
    assert caught.value.retry_after == 3.0


# -- Retry-After and URLs, read by the shared helpers


@pytest.mark.parametrize(
    ("answer", "retry_after"),
    [
        # unreadable: no hint, still worth another try
        (Answer(503, headers={"Retry-After": "soon"}), None),
        # a date already past: now
        (Answer(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), 0.0),
        # a permanent answer is not retried, whatever it says
        (Answer(400, headers={"Retry-After": "30"}), None),
    ],
)
def test_retry_after_edge_cases(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
    answer: Answer,
    retry_after: float | None,
) -> None:
    fake_pagerduty.script(answer)

    error = send_error(notifier, make_notification(make_alert()))

    assert error.recoverable is (answer.status != 400)
    assert error.retry_after == retry_after


def test_unreachable_url_is_named_without_its_credentials_or_query(
    secrets: SecretStore,
) -> None:
    port = free_port()
    url = f"http://relay:hunter2@127.0.0.1:{port}/v2/enqueue?token=t0ken#frag"
    pager = make_notifier(url, secrets)

    error = send_error(pager, make_notification(make_alert()))
    close(pager)

    assert f"cannot reach PagerDuty at http://relay:****@127.0.0.1:{port}/v2/enqueue " in str(error)
    for secret in ("hunter2", "t0ken", "frag"):
        assert secret not in str(error)


def test_plain_http_url_warns_with_the_url_redacted(
    secrets: SecretStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)

    pager = make_notifier("http://relay:hunter2@[2001:db8::1]:8080/v2/enqueue?k=v", secrets)
    close(pager)

    (record,) = caplog.records
    assert record.name == "alert_router.notify.pagerduty"
    assert "plain http" in record.getMessage()
    assert record.__dict__["url"] == "http://relay:****@[2001:db8::1]:8080/v2/enqueue"
    assert record.__dict__["destination"] == "oncall"
    assert "hunter2" not in caplog.text


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:99999/v2/enqueue",  # port out of range
        "http://[::1/v2/enqueue",  # unclosed IPv6 bracket
        "ftp://127.0.0.1/v2/enqueue",  # not http(s)
        "https:///v2/enqueue",  # no host
    ],
)
def test_events_url_that_cannot_be_used_is_refused_at_construction(
    secrets: SecretStore, url: str
) -> None:
    with pytest.raises(ValueError, match="events_url must be an http"):
        make_notifier(url, secrets)
