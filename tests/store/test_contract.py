"""One contract every store passes: SQLite and Redis; and Redis' Lua decide is Python's."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from receiver.dedup import LedgerEntry, decide
from receiver.models import Alert, CostContext, DedupReason
from receiver.store.base import Claims, Planned, ReadOnlyStoreError, Store
from receiver.store.redis import scripts
from receiver.store.redis.store import RedisStore
from receiver.store.sqlite.store import SqliteStore
from tests.fakes.redis import RedisServer
from tests.store.conftest import StoreFactory

T0 = datetime(2026, 11, 29, 2, 39, 35, 178000, tzinfo=UTC)


def alert(fp: str = "a1", status: str = "firing", starts: datetime = T0) -> Alert:
    return Alert(
        fingerprint=fp,
        status=status,
        labels={"alertname": "HighGPUCost", "service": "svc"},
        annotations={"summary": "s"},
        starts_at=starts,
        ends_at=None,
    )


def planned(
    a: Alert, dest: str = "slack", repeat: float = 3600, send_resolved: bool = True
) -> Planned:
    return Planned(dest, "r", repeat, send_resolved, a, CostContext(), 0.0)


async def route_all(
    store: Store, dest: str = "slack", now: float = 100.0, **kw: float
) -> list[DedupReason]:
    items = await store.claim_inbox(100, now, 60)
    decisions = await store.plan(
        [i.id for i in items], [planned(i.alert, dest) for i in items], now
    )
    return [d.reason for d in decisions]


async def test_ingest_dedups_exact_copies_within_window(store: Store) -> None:
    assert (await store.ingest([alert()], 100.0, 60)).accepted == 1
    again = await store.ingest([alert()], 130.0, 60)
    assert (again.accepted, again.duplicates) == (0, 1)
    # Past the window the same alert is new work again (a group_interval re-send).
    later = await store.ingest([alert()], 161.0, 60)
    assert (later.accepted, later.duplicates) == (1, 0)
    # Another status or startsAt is not a copy.
    other = await store.ingest([alert(status="resolved"), alert(fp="a2")], 162.0, 60)
    assert (other.accepted, other.duplicates) == (2, 0)


async def test_ingest_says_which_alerts_were_duplicates(store: Store) -> None:
    first = await store.ingest([alert("d1"), alert("d2")], 100.0, 60)
    assert first.duplicate == (False, False)
    # In the webhook's order: the copies of d2 and d1, and a new d3 between them.
    again = await store.ingest([alert("d2"), alert("d3"), alert("d1")], 110.0, 60)
    assert again.duplicate == (True, False, True)
    assert (again.accepted, again.duplicates) == (1, 2)
    assert (await store.ingest([], 120.0, 60)).duplicate == ()


async def test_inbox_lease_and_restart(make_store: StoreFactory) -> None:
    first = make_store()
    await first.open()
    await first.ingest([alert("x"), alert("y")], 100.0, 60)
    claimed = await first.claim_inbox(10, 100.0, 60, owner="dead")
    assert len(claimed) == 2
    assert not any(i.taken_over for i in claimed)
    assert await first.claim_inbox(10, 101.0, 60) == []  # leased
    await first.close()
    # A restart: opening the store releases nothing (another process may still hold the
    # claims: a replica on Redis, the CLI beside a router on SQLite); a dead process'
    # claims come back when their lease (60 s from 100) expires.
    second = make_store()
    await second.open()
    try:
        assert await second.claim_inbox(10, 159.0, 60) == []
        again = await second.claim_inbox(10, 160.0, 60, owner="new")
        assert sorted(i.alert.fingerprint for i in again) == ["x", "y"]
        # Taken over from an owner whose lease ran out.
        assert all(i.taken_over for i in again)
    finally:
        await second.close()


async def test_renew_keeps_a_claim_and_release_hands_it_over(store: Store) -> None:
    await store.ingest([alert("i1"), alert("i2"), alert("o1"), alert("o2")], 100.0, 60)
    inbox = await store.claim_inbox(2, 100.0, 10, owner="a")
    await route_all(store)  # o1, o2 queued
    outbox = await store.claim_outbox("slack", 10, 100.0, 10, owner="a")
    assert [i.alert.fingerprint for i in inbox] == ["i1", "i2"]
    assert [i.alert.fingerprint for i in outbox] == ["o1", "o2"]
    held = Claims(tuple(i.id for i in inbox), tuple(i.id for i in outbox))
    # Another owner renews nothing of it; the owner renews all of it.
    assert await store.renew("b", held, 105.0, 10) == held
    assert await store.renew("a", held, 105.0, 10) == Claims()
    # Past the first lease (110) but within the renewed one (115): still held.
    assert await store.claim_inbox(10, 112.0, 10, owner="b") == []
    assert await store.claim_outbox("slack", 10, 112.0, 10, owner="b") == []
    # Another owner releases nothing; the owner's release makes it claimable at once.
    assert await store.release("b", held) == 0
    assert await store.claim_inbox(10, 113.0, 10, owner="b") == []
    assert await store.release("a", held) == 4
    again = await store.claim_inbox(10, 113.0, 10, owner="b")
    sent = await store.claim_outbox("slack", 10, 113.0, 10, owner="b")
    assert sorted(i.id for i in again) == sorted(held.inbox)
    assert sorted(i.id for i in sent) == sorted(held.outbox)
    # Released, not run out: no takeover.
    assert not any(i.taken_over for i in again)
    assert not any(i.taken_over for i in sent)
    # The first owner holds none of it now: renewing reports it all lost.
    assert await store.renew("a", held, 114.0, 10) == held


async def test_a_lease_that_ran_out_is_not_renewed_and_is_a_takeover(store: Store) -> None:
    await store.ingest([alert("t1")], 100.0, 60)
    await route_all(store)
    [item] = await store.claim_outbox("slack", 10, 100.0, 10, owner="a")
    assert not item.taken_over
    # The owner stalled past its lease: the claim is anyone's, and renewing it fails.
    lost = await store.renew("a", Claims(outbox=(item.id,)), 111.0, 10)
    assert lost == Claims(outbox=(item.id,))
    [again] = await store.claim_outbox("slack", 10, 111.0, 10, owner="b")
    assert again.id == item.id and again.taken_over
    # Settled work is not renewed either, and a retry is no takeover.
    await store.reschedule([again], 120.0, "HTTP 500")
    assert await store.renew("b", Claims(outbox=(item.id,)), 112.0, 10) == Claims(outbox=(item.id,))
    [retry] = await store.claim_outbox("slack", 10, 120.0, 10, owner="b")
    assert not retry.taken_over
    await store.delivered([retry], [None], 121.0)
    assert await store.release("b", Claims(outbox=(item.id,))) == 0


async def test_routed_inbox_items_are_not_renewed(store: Store) -> None:
    await store.ingest([alert("r1")], 100.0, 60)
    items = await store.claim_inbox(10, 100.0, 10, owner="a")
    await store.plan([i.id for i in items], [planned(i.alert) for i in items], 100.0)
    held = Claims(inbox=tuple(i.id for i in items))
    assert await store.renew("a", held, 101.0, 10) == held
    assert await store.release("a", held) == 0
    assert await store.claim_inbox(10, 101.0, 10) == []


async def test_read_only_open_changes_nothing(make_store: StoreFactory, tmp_path: Path) -> None:
    """`dead-letters list` beside a running router: it reads, and no lease or row moves."""
    router = make_store()
    await router.open()
    try:
        await router.ingest([alert("a"), alert("b"), alert("c")], 100.0, 60)
        await route_all(router)
        [claimed, failed] = await router.claim_outbox("slack", 2, 100.0, 600, owner="r")
        await router.dead_letter([failed], "HTTP 404", 100.0)
        await router.ingest([alert("d")], 100.0, 60)
        inbox = await router.claim_inbox(10, 100.0, 600, owner="r")
        before = await _snapshot(router, make_store)

        reader = _read_only(make_store, router)
        await reader.open()
        try:
            [dead] = await reader.dead_letters()
            assert dead.error == "HTTP 404"
            assert await reader.depths() == {"inbox": 1, "outbox": 2, "dead_letters": 1}
            assert await reader.queued_destinations() == {"slack"}
            assert await reader.ledger_entry("slack", claimed.alert.episode) is None
            assert await reader.ready_count("slack", 100.0) == 1
            writes = [
                reader.ingest([alert("e")], 101.0, 60),
                reader.claim_inbox(10, 101.0, 60),
                reader.plan([], [], 101.0),
                reader.claim_outbox("slack", 10, 101.0, 60),
                reader.delivered([claimed], [None], 101.0),
                reader.reschedule([claimed], 101.0, "x"),
                reader.dead_letter([claimed], "x", 101.0),
                reader.replay_dead_letters(None, 101.0),
                reader.check_writable(),
                reader.purge(101.0, 60, 86400),
                reader.reserve_send("slack", 1.0, 101.0),
                reader.pause_destination("slack", 200.0),
                reader.renew("r", Claims(tuple(i.id for i in inbox)), 101.0, 60),
                reader.release("r", Claims(outbox=(claimed.id,))),
            ]
            for write in writes:
                with pytest.raises(ReadOnlyStoreError, match="read-only"):
                    await write
        finally:
            await reader.close()
        assert await _snapshot(router, make_store) == before
        # The router's claims still hold: nothing was released by the reader's open.
        assert await router.claim_inbox(10, 101.0, 60) == []
        assert await router.ready_count("slack", 101.0) == 1
    finally:
        await router.close()


def _read_only(make_store: StoreFactory, like: Store) -> Store:
    if isinstance(like, SqliteStore):
        return SqliteStore(like.path, read_only=True)
    assert isinstance(like, RedisStore)
    return RedisStore(like._url, read_only=True)


async def _snapshot(store: Store, make_store: StoreFactory) -> object:
    """Every row and key of the store's state, leases included."""
    if isinstance(store, SqliteStore):
        conn = sqlite3.connect(store.path)
        try:
            return {
                table: conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()  # noqa: S608
                for table in ("seen", "inbox", "outbox", "ledger", "dead_letters", "meta")
            }
        finally:
            conn.close()
    assert isinstance(store, RedisStore)
    client = store._redis()
    state = {}
    for key in sorted(await client.keys("*")):
        state[key] = (await client.type(key), await client.dump(key))
    return state


async def test_first_repeat_and_resolve(store: Store) -> None:
    await store.ingest([alert()], 100.0, 60)
    assert await route_all(store) == [DedupReason.FIRST]
    # Queued but not yet delivered: a re-send is not queued twice.
    await store.ingest([alert()], 200.0, 60)
    assert await route_all(store, now=200.0) == [DedupReason.PENDING]
    [item] = await store.claim_outbox("slack", 10, 200.0, 60)
    await store.delivered([item], [{"channel": "C1", "ts": "1.1"}], 200.0)
    # Within repeat_interval: suppressed.
    await store.ingest([alert()], 300.0, 60)
    assert await route_all(store, now=300.0) == [DedupReason.ALREADY_NOTIFIED]
    # After repeat_interval (3600 s): again.
    await store.ingest([alert()], 3900.0, 60)
    assert await route_all(store, now=3900.0) == [DedupReason.REPEAT]
    [item] = await store.claim_outbox("slack", 10, 3900.0, 60)
    await store.delivered([item], [None], 3900.0)
    # The resolve carries the ref of the firing message (for chat.update).
    await store.ingest([alert(status="resolved")], 4000.0, 60)
    assert await route_all(store, now=4000.0) == [DedupReason.RESOLVED]
    [item] = await store.claim_outbox("slack", 10, 4000.0, 60)
    assert item.ref == {"channel": "C1", "ts": "1.1"}
    await store.delivered([item], [None], 4000.0)
    # Resolve once.
    await store.ingest([alert(status="resolved")], 4100.0, 60)
    assert await route_all(store, now=4100.0) == [DedupReason.ALREADY_RESOLVED]
    entry = await store.ledger_entry("slack", alert().episode)
    assert entry is not None and entry.firing_at == 3900.0 and entry.resolved_at == 4000.0


async def test_a_resolve_is_known_as_queued_until_the_ledger_has_it(store: Store) -> None:
    # A Slack button pressed while the resolve is being sent must not bring back the
    # firing message (receiver/slack_actions/respond.py): the outbox tells it.
    episode = alert().episode
    await store.ingest([alert()], 100.0, 60)
    await route_all(store)
    [firing] = await store.claim_outbox("slack", 10, 100.0, 60)
    assert not await store.resolve_queued("slack", episode)  # a firing is no resolve
    await store.delivered([firing], [None], 100.0)
    assert not await store.resolve_queued("slack", episode)
    await store.ingest([alert(status="resolved")], 200.0, 60)
    assert await route_all(store, now=200.0) == [DedupReason.RESOLVED]
    assert await store.resolve_queued("slack", episode)
    assert not await store.resolve_queued("pagerduty", episode)
    assert not await store.resolve_queued("slack", alert("other").episode)
    [item] = await store.claim_outbox("slack", 10, 200.0, 60)
    # Being sent, then waiting for its retry: still queued, and not in the ledger yet.
    assert await store.resolve_queued("slack", episode)
    await store.reschedule([item], 210.0, "HTTP 503")
    assert await store.resolve_queued("slack", episode)
    entry = await store.ledger_entry("slack", episode)
    assert entry is not None and entry.resolved_at is None
    [item] = await store.claim_outbox("slack", 10, 210.0, 60)
    await store.delivered([item], [None], 211.0)
    assert not await store.resolve_queued("slack", episode)
    entry = await store.ledger_entry("slack", episode)
    assert entry is not None and entry.resolved_at == 211.0


async def test_resolve_only_where_firing_was_sent(store: Store) -> None:
    await store.ingest([alert(status="resolved")], 100.0, 60)
    assert await route_all(store) == [DedupReason.NOT_NOTIFIED]
    assert await store.depths() == {"inbox": 0, "outbox": 0, "dead_letters": 0}


async def test_resolve_queued_behind_a_pending_firing(store: Store) -> None:
    await store.ingest([alert()], 100.0, 60)
    await store.ingest([alert(status="resolved")], 100.5, 60)
    assert await route_all(store) == [DedupReason.FIRST, DedupReason.RESOLVED]
    items = await store.claim_outbox("slack", 10, 101.0, 60)
    assert [i.alert.status for i in items] == ["firing", "resolved"]


async def test_send_resolved_off(store: Store) -> None:
    await store.ingest([alert()], 100.0, 60)
    items = await store.claim_inbox(10, 100.0, 60)
    await store.plan([i.id for i in items], [planned(items[0].alert, send_resolved=False)], 100.0)
    [item] = await store.claim_outbox("slack", 10, 100.0, 60)
    await store.delivered([item], [None], 100.0)
    await store.ingest([alert(status="resolved")], 200.0, 60)
    items = await store.claim_inbox(10, 200.0, 60)
    [d] = await store.plan(
        [i.id for i in items], [planned(items[0].alert, send_resolved=False)], 200.0
    )
    assert d.reason is DedupReason.SEND_RESOLVED_OFF


async def test_destinations_are_independent(store: Store) -> None:
    await store.ingest([alert()], 100.0, 60)
    items = await store.claim_inbox(10, 100.0, 60)
    a = items[0].alert
    await store.plan([items[0].id], [planned(a, "slack"), planned(a, "pager")], 100.0)
    [s] = await store.claim_outbox("slack", 10, 100.0, 60)
    await store.delivered([s], [None], 100.0)
    # Pager not delivered yet: a re-send routed to it (again) is pending there, but a
    # new destination (escalation on money) gets its first notification.
    await store.ingest([alert()], 200.0, 60)
    items = await store.claim_inbox(10, 200.0, 60)
    decisions = await store.plan(
        [items[0].id],
        [planned(a, "slack"), planned(a, "pager"), planned(a, "oncall-2")],
        200.0,
    )
    assert [d.reason for d in decisions] == [
        DedupReason.ALREADY_NOTIFIED,
        DedupReason.PENDING,
        DedupReason.FIRST,
    ]


async def test_reschedule_and_dead_letters(store: Store) -> None:
    await store.ingest([alert()], 100.0, 60)
    await route_all(store)
    [item] = await store.claim_outbox("slack", 10, 100.0, 60)
    await store.reschedule([item], 150.0, "HTTP 500")
    assert await store.ready_count("slack", 120.0) == 0  # not before 150
    assert await store.ready_count("slack", 150.0) == 1
    [item] = await store.claim_outbox("slack", 10, 150.0, 60)
    assert item.attempts == 1
    await store.dead_letter([item], "HTTP 404 channel_not_found", 160.0)
    [dead] = await store.dead_letters()
    assert (dead.destination, dead.alertname, dead.error, dead.attempts) == (
        "slack",
        "HighGPUCost",
        "HTTP 404 channel_not_found",
        2,
    )
    assert (await store.depths())["dead_letters"] == 1
    assert await store.replay_dead_letters(None, 170.0) == 1
    assert await store.dead_letters() == []
    [again] = await store.claim_outbox("slack", 10, 170.0, 60)
    assert again.alert.fingerprint == "a1"


async def test_replay_by_id(store: Store) -> None:
    await store.ingest([alert("a"), alert("b")], 100.0, 60)
    await route_all(store)
    items = await store.claim_outbox("slack", 10, 100.0, 60)
    await store.dead_letter(items, "HTTP 400", 100.0)
    letters = await store.dead_letters()
    assert await store.replay_dead_letters([letters[1].id], 110.0) == 1
    assert [d.id for d in await store.dead_letters()] == [letters[0].id]


async def test_concurrent_ingest_is_grouped_and_complete(store: Store) -> None:
    results = await asyncio.gather(
        *(store.ingest([alert(f"fp{i}")], 100.0, 60) for i in range(300))
    )
    assert sum(r.accepted for r in results) == 300
    assert (await store.depths())["inbox"] == 300


async def test_purge_forgets_old_copies(store: Store) -> None:
    await store.ingest([alert()], 100.0, 60)
    await store.purge(1000.0, 60, 86400)
    # With the copy forgotten, the same alert is accepted again even inside a window
    # measured from the new time.
    assert (await store.ingest([alert()], 1000.0, 60)).accepted == 1
    await store.check_writable()


async def test_send_slots_are_spaced_and_shared(make_store: StoreFactory) -> None:
    # Two handles on the same state (two replicas for Redis): one rate between them.
    a, b = make_store(), make_store()
    await a.open()
    await b.open()
    try:
        first = await a.reserve_send("slack", 1.0, 100.0)
        if isinstance(a, SqliteStore):
            # One process owns a SQLite file: its slots are per process.
            second = await a.reserve_send("slack", 1.0, 100.0)
        else:
            second = await b.reserve_send("slack", 1.0, 100.0)
        assert (first, second) == (100.0, 101.0)
        # Another destination has its own slots.
        assert await a.reserve_send("pager", 0.5, 100.0) == 100.0
        # A pause (Retry-After) holds the next slot back; an earlier pause does not undo it.
        await a.pause_destination("pager", 130.0)
        await a.pause_destination("pager", 110.0)
        assert await a.reserve_send("pager", 0.5, 101.0) == 130.0
        # Time passing: a slot is never in the past.
        assert await a.reserve_send("slack", 1.0, 500.0) == 500.0
    finally:
        await a.close()
        await b.close()


async def test_a_resolve_never_overtakes_its_retrying_firing(store: Store) -> None:
    await store.ingest([alert()], 100.0, 60)
    await route_all(store)
    [firing] = await store.claim_outbox("slack", 10, 100.0, 60)
    await store.reschedule([firing], 150.0, "HTTP 503")  # the firing waits for its retry
    await store.ingest([alert(status="resolved")], 110.0, 60)
    assert await route_all(store, now=110.0) == [DedupReason.RESOLVED]
    # The resolve is queued, but not sent before the firing.
    assert await store.claim_outbox("slack", 10, 120.0, 60) == []
    items = await store.claim_outbox("slack", 10, 150.0, 60)
    assert [i.alert.status for i in items] == ["firing", "resolved"]


async def test_claims_follow_queue_order_across_retried_and_new(store: Store) -> None:
    await store.ingest([alert(f"q{i}") for i in range(4)], 100.0, 60)
    await route_all(store)
    first, second = await store.claim_outbox("slack", 2, 100.0, 60)
    # q1 fails and waits until 150; q0 waits longer, until 170.
    await store.reschedule([second], 150.0, "HTTP 500")
    await store.reschedule([first], 170.0, "HTTP 500")
    assert await store.ready_count("slack", 140.0) == 2  # q2, q3
    assert await store.ready_count("slack", 160.0) == 3  # q1 is due again
    assert await store.ready_count("slack", 160.0, at_most=2) == 2
    assert await store.ready_count("slack", 180.0, at_most=10) == 4
    # Due again, q1 goes out before the newer q2 and q3 (queue order, not retry order).
    items = await store.claim_outbox("slack", 2, 160.0, 60)
    assert [i.alert.fingerprint for i in items] == ["q1", "q2"]
    items = await store.claim_outbox("slack", 10, 180.0, 60)
    assert [i.alert.fingerprint for i in items] == ["q0", "q3"]
    assert await store.ready_count("slack", 180.0) == 0


async def test_queued_destinations(store: Store) -> None:
    assert await store.queued_destinations() == set()
    await store.ingest([alert("d1"), alert("d2")], 100.0, 60)
    items = await store.claim_inbox(10, 100.0, 60)
    plans = [planned(items[0].alert, "slack"), planned(items[1].alert, "pager:*[x]")]
    await store.plan([i.id for i in items], plans, 100.0)
    assert await store.queued_destinations() == {"slack", "pager:*[x]"}
    [waiting] = await store.claim_outbox("pager:*[x]", 10, 100.0, 60)
    await store.reschedule([waiting], 500.0, "HTTP 503")  # waiting for a retry still counts
    assert await store.queued_destinations() == {"slack", "pager:*[x]"}
    [sent] = await store.claim_outbox("slack", 10, 100.0, 60)
    await store.delivered([sent], [None], 101.0)
    assert await store.queued_destinations() == {"pager:*[x]"}


# -- the dedup decision in Lua is receiver.dedup.decide --------------------------------

# The Lua decide (as plan.lua gets it) over a table of cases, one result per case.
_EVAL_DECIDE = """
local function opt(v) if v == '' then return nil end return tonumber(v) end
local out = {}
for i = 1, #ARGV, 8 do
  out[#out + 1] = decide(ARGV[i], opt(ARGV[i + 1]), opt(ARGV[i + 2]), ARGV[i + 3] == '1',
    ARGV[i + 4] == '1', tonumber(ARGV[i + 5]), ARGV[i + 6] == '1', tonumber(ARGV[i + 7]))
end
return out
"""


async def test_a_report_slot_is_taken_once_across_replicas_and_restarts(
    make_store: StoreFactory,
) -> None:
    # Two handles on one state: two replicas (Redis), or the router after a restart.
    a, b = make_store(), make_store()
    await a.open()
    await b.open()
    nine = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    try:
        assert await a.last_report_slot("daily-costs") is None
        # Both ask at once: exactly one takes it.
        won = await asyncio.gather(
            a.claim_report_slot("daily-costs", nine, "replica-a"),
            b.claim_report_slot("daily-costs", nine, "replica-b"),
        )
        assert sorted(won) == [False, True]
        # Asking again, by either, never takes it twice.
        assert not await a.claim_report_slot("daily-costs", nine, "replica-a")
        assert not await b.claim_report_slot("daily-costs", nine, "replica-b")
        assert await a.last_report_slot("daily-costs") == nine
        assert await b.last_report_slot("daily-costs") == nine
        # Another report's slot at the same time is its own.
        assert await b.claim_report_slot("weekly", nine, "replica-b")
        # The next day's slot; an older slot taken late does not move the latest back.
        tomorrow = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
        assert await a.claim_report_slot("daily-costs", tomorrow, "replica-a")
        assert await b.claim_report_slot("daily-costs", datetime(2026, 3, 1, 8, tzinfo=UTC), "b")
        assert await b.last_report_slot("daily-costs") == tomorrow
    finally:
        await a.close()
        await b.close()
    # A restart keeps what was taken.
    again = make_store()
    await again.open()
    try:
        assert await again.last_report_slot("daily-costs") == datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
        assert not await again.claim_report_slot("daily-costs", nine, "replica-c")
    finally:
        await again.close()


def test_lua_decide_matches_python(redis_server: RedisServer) -> None:
    repeat = 3600.0
    entries = [
        None,  # never delivered
        LedgerEntry(100.0, None),  # firing delivered
        LedgerEntry(None, 150.0),  # only a resolve delivered
        LedgerEntry(100.0, 150.0),  # firing and resolve delivered
    ]
    pendings = [set(), {"firing"}, {"resolved"}, {"firing", "resolved"}]
    # Within repeat_interval, exactly at it (>=: a repeat), and past it.
    nows = [200.0, 100.0 + repeat, 100.0 + repeat - 0.001, 5000.0]
    cases = list(itertools.product(["firing", "resolved"], entries, pendings, [True, False], nows))
    args: list[str] = []
    for status, entry, pending, send_resolved, now in cases:
        args += [
            status,
            "" if entry is None or entry.firing_at is None else repr(entry.firing_at),
            "" if entry is None or entry.resolved_at is None else repr(entry.resolved_at),
            "1" if "firing" in pending else "0",
            "1" if "resolved" in pending else "0",
            repr(repeat),
            "1" if send_resolved else "0",
            repr(now),
        ]
    lua_decide = scripts.library("lib/decide.lua")
    lua = redis_server.command("EVAL", lua_decide + _EVAL_DECIDE, 0, *args)
    python = [
        decide(s, e, p, repeat_interval=repeat, send_resolved=r, now=n).value
        for s, e, p, r, n in cases
    ]
    assert lua == python
    # The table reaches every reason decide() can give.
    assert set(python) == {r.value for r in DedupReason} - {DedupReason.DUPLICATE.value}
