"""The report queue's contract, on SQLite and Redis: a slot taken queues one send per
destination; sends are leased, renewed, taken over, retried, kept as dead letters and
replayed; old slots are purged but each report's latest is kept."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from receiver.store.base import REPORT_SLOT_RETENTION, Store
from tests.store.conftest import StoreFactory

NINE = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
NOW = NINE.timestamp() + 5
LEASE = 12.0


async def test_the_caller_that_takes_a_slot_queues_one_send_per_destination(
    make_store: StoreFactory,
) -> None:
    a, b = make_store(), make_store()
    await a.open()
    await b.open()
    try:
        won = await asyncio.gather(
            a.claim_report_slot("daily", NINE, "a", ["finops", "ops"], late=True),
            b.claim_report_slot("daily", NINE, "b", ["finops", "ops"], late=True),
        )
        assert sorted(won) == [False, True]
        # A slot recorded without destinations (a new report's start) queues nothing.
        assert await a.claim_report_slot("weekly", NINE, "a")
        sends = await b.claim_report_sends(10, NOW, LEASE, "b")
        assert [(s.report, s.slot_at, s.late, s.destination) for s in sends] == [
            ("daily", NINE, True, "finops"),
            ("daily", NINE, True, "ops"),
        ]
        assert all(s.attempts == 0 and s.posted is None and not s.taken_over for s in sends)
        # Leased: nobody else gets them, not even the other replica.
        assert await a.claim_report_sends(10, NOW + 1, LEASE, "a") == []
    finally:
        await a.close()
        await b.close()


async def test_a_lease_that_ran_out_is_taken_over_and_not_renewed(store: Store) -> None:
    await store.claim_report_slot("daily", NINE, "a", ["finops"])
    [send] = await store.claim_report_sends(10, NOW, LEASE, "a")
    assert await store.renew_report_sends("a", [send.id], NOW + 6, LEASE) == {send.id}
    # Renewed to NOW + 18: still held at NOW + 15.
    assert await store.claim_report_sends(10, NOW + 15, LEASE, "b") == []
    assert await store.renew_report_sends("b", [send.id], NOW + 15, LEASE) == set()
    # Not renewed again: at NOW + 19 it is anyone's, and marked as taken over.
    [taken] = await store.claim_report_sends(10, NOW + 19, LEASE, "b")
    assert taken.id == send.id and taken.taken_over
    assert await store.renew_report_sends("a", [send.id], NOW + 20, LEASE) == set()
    # Only the owner settles it.
    assert not await store.report_sent("a", send)
    assert await store.report_sent("b", taken)
    assert await store.claim_report_sends(10, NOW + 100, LEASE, "c") == []
    assert (await store.depths())["dead_letters"] == 0


async def test_a_failed_try_is_counted_and_queued_again_with_the_posted_ref(
    store: Store,
) -> None:
    await store.claim_report_slot("daily", NINE, "a", ["finops"])
    [send] = await store.claim_report_sends(10, NOW, LEASE, "a")
    ref = {"channel": "C1", "ts": "1700000000.000100", "kind": "report"}
    await store.reschedule_report_send("a", send, NOW + 30, "upload 503", ref)
    # Not before its time, and then with the try counted and the ref kept.
    assert await store.claim_report_sends(10, NOW + 29, LEASE, "a") == []
    [again] = await store.claim_report_sends(10, NOW + 30, LEASE, "a")
    assert (again.id, again.attempts, again.posted) == (send.id, 1, ref)
    assert not again.taken_over  # rescheduled by its owner, not abandoned
    # A try without a ref (nothing posted) clears it.
    await store.reschedule_report_send("a", again, NOW + 31, "503", None)
    [third] = await store.claim_report_sends(10, NOW + 31, LEASE, "a")
    assert (third.attempts, third.posted) == (2, None)
    # Another owner cannot reschedule it.
    await store.reschedule_report_send("b", third, NOW + 99, "x", None)
    assert await store.renew_report_sends("a", [third.id], NOW + 32, LEASE) == {third.id}


async def test_a_dead_letter_is_listed_counted_and_replayed(store: Store) -> None:
    await store.claim_report_slot("daily", NINE, "a", ["finops", "ops"])
    first, second = await store.claim_report_sends(10, NOW, LEASE, "a")
    await store.reschedule_report_send("a", first, NOW, "503", {"channel": "C1", "ts": "1.2"})
    [first] = await store.claim_report_sends(10, NOW, LEASE, "a")
    await store.dead_letter_report_send("a", first, "503 after 2 tries", NOW + 1)
    await store.dead_letter_report_send("a", second, "channel_not_found", NOW + 2)
    letters = await store.dead_letters()
    assert [(d.destination, d.alertname, d.status, d.attempts, d.error) for d in letters] == [
        ("finops", "daily", "report", 2, "503 after 2 tries"),
        ("ops", "daily", "report", 1, "channel_not_found"),
    ]
    assert all(d.id.startswith("report-") and d.episode == NINE.isoformat() for d in letters)
    assert [d.failed_at for d in letters] == [NOW + 1, NOW + 2]
    assert (await store.depths())["dead_letters"] == 2
    # Dead: not claimable, not renewable, not sent by a late owner.
    assert await store.claim_report_sends(10, NOW + 1000, LEASE, "b") == []
    assert not await store.report_sent("a", second)
    # Replayed by id: queued at once, tries reset, the posted ref kept (only the chart goes).
    assert await store.replay_dead_letters([letters[0].id], NOW + 3) == 1
    [replayed] = await store.claim_report_sends(10, NOW + 3, LEASE, "b")
    assert (replayed.destination, replayed.attempts) == ("finops", 0)
    assert replayed.posted == {"channel": "C1", "ts": "1.2"}
    assert [d.destination for d in await store.dead_letters()] == ["ops"]
    # Replaying all takes the reports' too; a dead letter replayed twice counts once.
    assert await store.replay_dead_letters(None, NOW + 4) == 1
    assert await store.replay_dead_letters([letters[1].id], NOW + 4) == 0
    assert await store.dead_letters() == []
    assert [s.destination for s in await store.claim_report_sends(10, NOW + 4, LEASE, "b")] == [
        "ops"
    ]


async def test_purge_forgets_old_slots_but_each_reports_latest(store: Store) -> None:
    old = NINE - timedelta(days=90)
    assert await store.claim_report_slot("quarterly", old, "a")
    assert await store.claim_report_slot("daily", old, "a")
    assert await store.claim_report_slot("daily", NINE, "a")
    await store.purge(NINE.timestamp() + REPORT_SLOT_RETENTION / 2, 60.0, 86400.0)
    # The latest slot is where each schedule goes on from, however old.
    assert await store.last_report_slot("quarterly") == old
    assert await store.last_report_slot("daily") == NINE
    assert not await store.claim_report_slot("daily", NINE, "b")
    assert not await store.claim_report_slot("quarterly", old, "b")
