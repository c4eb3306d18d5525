"""The vendor client as set up by client.py: one keep-alive connection, no retries of its own."""

from __future__ import annotations

import asyncio
import time

import pytest

from receiver.config.secrets import SecretStore
from receiver.models import DedupReason
from receiver.notify.pagerduty.notifier import PagerDutyNotifier, dedup_key
from tests.fakes.pagerduty import Answer, FakePagerDuty
from tests.notify.pagerduty.support import (
    PROMPT,
    close,
    make_alert,
    make_notification,
    make_notifier,
    resolved,
    send,
    send_error,
)
from tests.support import free_port


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_server_errors_are_recoverable_and_not_retried_by_the_client(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
    status: int,
) -> None:
    fake_pagerduty.fail(status, times=5)

    started = time.monotonic()
    error = send_error(notifier, make_notification(make_alert()))
    elapsed = time.monotonic() - started

    assert error.recoverable is True
    assert f"HTTP {status}" in str(error)
    # No hidden retries: one notify, one request, no sleeping.
    assert len(fake_pagerduty.requests) == 1
    assert elapsed < PROMPT


def test_connection_refused_is_recoverable_and_prompt(secrets: SecretStore) -> None:
    pager = make_notifier(f"http://127.0.0.1:{free_port()}/v2/enqueue", secrets)

    started = time.monotonic()
    error = send_error(pager, make_notification(make_alert()))
    elapsed = time.monotonic() - started
    close(pager)

    assert error.recoverable is True
    assert "cannot reach PagerDuty" in str(error)
    assert "ConnectError" in str(error)
    assert elapsed < PROMPT


def test_dropped_connection_is_recoverable_and_not_retried(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
) -> None:
    fake_pagerduty.drop(times=3)

    started = time.monotonic()
    error = send_error(notifier, make_notification(make_alert()))
    elapsed = time.monotonic() - started

    assert error.recoverable is True
    assert len(fake_pagerduty.requests) == 1
    assert elapsed < PROMPT


def test_timeout_is_recoverable(
    fake_pagerduty: FakePagerDuty,
    secrets: SecretStore,
) -> None:
    fake_pagerduty.script(Answer(delay=1.0, process=True))
    pager = make_notifier(fake_pagerduty.url, secrets, timeout=0.2)

    error = send_error(pager, make_notification(make_alert()))
    close(pager)

    assert error.recoverable is True
    assert "Timeout" in str(error)


def test_events_of_a_destination_share_one_keep_alive_connection(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
) -> None:
    fake_pagerduty.fail(502)
    alerts = [make_alert(fingerprint=f"{i:016x}") for i in range(3)]

    send_error(notifier, make_notification(alerts[0]))
    for alert in alerts:
        send(notifier, make_notification(alert))
        send(notifier, make_notification(resolved(alert), reason=DedupReason.RESOLVED))

    # Seven requests (an error answer included), one TCP connection.
    assert [r.status for r in fake_pagerduty.requests] == [502] + [202] * 6
    assert {r.connection for r in fake_pagerduty.requests} == {1}
    assert fake_pagerduty.connections_opened == 1
    assert fake_pagerduty.connections_closed == 0


def test_a_dropped_connection_is_replaced_once_then_reused(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
) -> None:
    send(notifier, make_notification(make_alert(fingerprint="aaaaaaaaaaaaaaaa")))
    fake_pagerduty.drop()
    send_error(notifier, make_notification(make_alert(fingerprint="bbbbbbbbbbbbbbbb")))
    send(notifier, make_notification(make_alert(fingerprint="bbbbbbbbbbbbbbbb")))
    send(notifier, make_notification(make_alert(fingerprint="cccccccccccccccc")))

    assert [r.connection for r in fake_pagerduty.requests] == [1, 1, 2, 2]
    assert fake_pagerduty.connections_opened == 2


def test_aclose_closes_the_connection(
    fake_pagerduty: FakePagerDuty,
    secrets: SecretStore,
) -> None:
    pager = make_notifier(fake_pagerduty.url, secrets)
    send(pager, make_notification(make_alert()))

    close(pager)
    close(pager)  # a second close does nothing

    fake_pagerduty.wait_for_closed_connections(1)
    assert fake_pagerduty.connections_opened == 1


def test_aclose_does_not_wait_for_a_send_in_flight_nor_cut_it_short(
    fake_pagerduty: FakePagerDuty,
    secrets: SecretStore,
) -> None:
    fake_pagerduty.script(Answer(delay=1.0, process=True))
    pager = make_notifier(fake_pagerduty.url, secrets)
    notification = make_notification(make_alert())

    async def reload_during_a_send() -> tuple[float, object]:
        sending = asyncio.create_task(pager.notify([notification]))
        while not fake_pagerduty.requests:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        await pager.aclose()
        closed_after = time.monotonic() - started
        return closed_after, await sending

    closed_after, refs = asyncio.run(reload_during_a_send())

    assert closed_after < 0.5
    # The send in flight still got PagerDuty's answer; the connection closed after it.
    assert refs == [{"dedup_key": dedup_key(notification.alert)}]
    fake_pagerduty.wait_for_closed_connections(1)


def test_parallel_sends_keep_their_connections_for_the_next_events(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
) -> None:
    # The pipeline runs several sends to one PagerDuty destination at once: each takes a
    # connection of the client's pool and leaves it there, open, for the next event.
    fake_pagerduty.script(*[Answer(delay=0.3, process=True)] * 4)

    async def two_rounds_of_four() -> None:
        for round_ in range(2):
            alerts = [make_alert(fingerprint=f"{round_}{i:015x}") for i in range(4)]
            await asyncio.gather(*(notifier.notify([make_notification(a)]) for a in alerts))

    asyncio.run(two_rounds_of_four())

    assert [r.status for r in fake_pagerduty.requests] == [202] * 8
    assert fake_pagerduty.connections_opened == 4
    first, second = fake_pagerduty.requests[:4], fake_pagerduty.requests[4:]
    # (The second round's answers are instant: one connection may serve two of them.)
    assert {r.connection for r in second} <= {r.connection for r in first}
    assert fake_pagerduty.connections_closed == 0


def test_a_closed_notifier_sends_nothing_and_says_try_again(
    fake_pagerduty: FakePagerDuty,
    secrets: SecretStore,
) -> None:
    pager = make_notifier(fake_pagerduty.url, secrets)
    close(pager)

    error = send_error(pager, make_notification(make_alert()))

    assert error.recoverable is True
    assert "closed" in str(error)
    assert fake_pagerduty.requests == []
