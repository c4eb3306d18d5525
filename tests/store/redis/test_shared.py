"""Replicas sharing one Redis: each episode queued once, leases, key names, TTLs."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from receiver.dedup import LedgerEntry
from receiver.models import DedupReason
from receiver.store.redis.store import RedisStore
from tests.fakes.redis import RedisServer
from tests.store.test_contract import alert, planned


@pytest.fixture
async def replicas(redis_server: RedisServer) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    """Two stores on one Redis: two alert-router replicas."""
    a, b = RedisStore(redis_server.url), RedisStore(redis_server.url)
    await a.open()
    await b.open()
    yield a, b
    await a.close()
    await b.close()


async def test_two_replicas_ingesting_the_same_alerts_count_each_once(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    a, b = replicas
    alerts = [alert(f"fp{i}") for i in range(50)]
    # An Alertmanager HA pair: both peers send every alert to both replicas, whole
    # webhooks and single-alert ones interleaved.
    results = await asyncio.gather(
        a.ingest(alerts, 100.0, 60),
        b.ingest(alerts, 100.0, 60),
        *(store.ingest([x], 100.0, 60) for x in alerts for store in (a, b)),
    )
    assert sum(r.accepted for r in results) == 50
    assert sum(r.duplicates for r in results) == 3 * 50
    assert (await a.depths())["inbox"] == 50
    claimed = await b.claim_inbox(100, 100.0, 60)
    assert sorted(i.alert.fingerprint for i in claimed) == sorted(x.fingerprint for x in alerts)


async def test_concurrent_plans_queue_an_episode_once(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    a, b = replicas
    for round_ in range(40):
        episode = [alert(f"r{round_}")]
        # Each replica holds its own inbox copy of the same episode (window 0: both
        # accepted) and routes it to the same two destinations at the same moment.
        await a.ingest(episode, 100.0, 0)
        await b.ingest(episode, 100.0, 0)
        [mine] = await a.claim_inbox(1, 100.0, 60)
        [theirs] = await b.claim_inbox(1, 100.0, 60)
        candidates = [planned(mine.alert, "slack"), planned(mine.alert, "pager")]
        first, second = await asyncio.gather(
            a.plan([mine.id], candidates, 100.0), b.plan([theirs.id], candidates, 100.0)
        )
        for dest in ("slack", "pager"):
            reasons = sorted(d.reason for d in first + second if d.destination == dest)
            assert reasons == sorted([DedupReason.FIRST, DedupReason.PENDING]), round_
    assert await a.depths() == {"inbox": 0, "outbox": 80, "dead_letters": 0}
    for dest in ("slack", "pager"):
        items = await b.claim_outbox(dest, 1000, 100.0, 60)
        counts = Counter((i.alert.episode, i.alert.status) for i in items)
        assert len(counts) == 40 and set(counts.values()) == {1}


async def test_concurrent_resolves_queue_once(replicas: tuple[RedisStore, RedisStore]) -> None:
    a, b = replicas
    firing, resolved = alert(), alert(status="resolved")
    await a.ingest([firing], 100.0, 60)
    [item] = await a.claim_inbox(10, 100.0, 60)
    await a.plan([item.id], [planned(firing)], 100.0)
    [sent] = await a.claim_outbox("slack", 10, 100.0, 60)
    await a.delivered([sent], [{"channel": "C1", "ts": "1.1"}], 100.0)
    # Many replicas plan the same resolve at once: one resolve is queued.
    decisions = await asyncio.gather(
        *(store.plan([], [planned(resolved)], 200.0) for store in (a, b) * 10)
    )
    reasons = Counter(d.reason for [d] in decisions)
    assert reasons == {DedupReason.RESOLVED: 1, DedupReason.PENDING: 19}
    [queued] = await b.claim_outbox("slack", 10, 200.0, 60)
    assert queued.ref == {"channel": "C1", "ts": "1.1"}


async def test_a_dead_replicas_claims_come_back_after_the_lease(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    a, b = replicas
    await a.ingest([alert()], 100.0, 60)
    [taken] = await a.claim_inbox(10, 100.0, 60)
    # Replica A dies holding the alert. B cannot take it while the lease runs.
    assert await b.claim_inbox(10, 159.9, 60) == []
    [again] = await b.claim_inbox(10, 160.0, 60)
    assert again.id == taken.id
    [d] = await b.plan([again.id], [planned(again.alert)], 160.0)
    assert d.reason is DedupReason.FIRST
    # A was only slow: its late plan of the same item queues nothing more.
    [late] = await a.plan([taken.id], [planned(taken.alert)], 170.0)
    assert late.reason is DedupReason.PENDING
    # The same for a notification claimed for delivery and never retired.
    [sending] = await a.claim_outbox("slack", 10, 200.0, 60)
    assert await b.ready_count("slack", 259.0) == 0
    assert await b.claim_outbox("slack", 10, 259.0, 60) == []
    assert await b.ready_count("slack", 260.0) == 1
    [resent] = await b.claim_outbox("slack", 10, 260.0, 60)
    assert (resent.id, resent.attempts) == (sending.id, 0)
    await b.delivered([resent], [None], 261.0)
    # A's late report cannot bring the delivered item back.
    await a.reschedule([sending], 270.0, "HTTP 500")
    await a.dead_letter([sending], "HTTP 400", 270.0)
    assert await a.depths() == {"inbox": 0, "outbox": 0, "dead_letters": 0}
    assert await a.ready_count("slack", 10_000.0) == 0


async def test_outbox_order_and_retry_time_per_destination(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    a, b = replicas
    await a.ingest([alert("x"), alert("y"), alert("x", "resolved")], 100.0, 60)
    items = await a.claim_inbox(10, 100.0, 60)
    await a.plan([i.id for i in items], [planned(i.alert) for i in items], 100.0)
    [first] = await b.claim_outbox("slack", 1, 100.0, 60)
    assert (first.alert.fingerprint, first.alert.status) == ("x", "firing")
    await b.reschedule([first], 150.0, "HTTP 503")
    # A rescheduled item waits for its time; the others go on in order, except the
    # resolve of x, which never overtakes its firing.
    rest = await a.claim_outbox("slack", 10, 120.0, 60)
    assert [(i.alert.fingerprint, i.alert.status) for i in rest] == [("y", "firing")]
    retry, resolve = await a.claim_outbox("slack", 10, 150.0, 60)
    assert (retry.id, retry.attempts) == (first.id, 1)
    assert (resolve.alert.fingerprint, resolve.alert.status) == ("x", "resolved")


async def test_destination_names_cannot_collide(replicas: tuple[RedisStore, RedisStore]) -> None:
    a, _ = replicas
    # Naively joined with ':', both would be the ledger key "...:a:b:x@<startsAt>".
    one, two = alert("b:x"), alert("x")
    await a.ingest([one, two], 100.0, 60)
    items = await a.claim_inbox(10, 100.0, 60)
    await a.plan([i.id for i in items], [planned(one, "a"), planned(two, "a:b")], 100.0)
    [sent] = await a.claim_outbox("a", 10, 100.0, 60)
    await a.delivered([sent], [None], 100.0)
    assert await a.ledger_entry("a:b", two.episode) is None
    assert await a.ledger_entry("a", one.episode) == LedgerEntry(100.0, None)


async def test_ttls_and_purge(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, prefix="t")
    await store.open()
    try:
        await store.purge(100.0, 60, 7200)  # the pipeline's housekeeping runs first
        await store.ingest([alert("old"), alert("new")], 100.0, 60)
        items = await store.claim_inbox(10, 100.0, 60)
        await store.plan([i.id for i in items], [planned(i.alert) for i in items], 100.0)
        old, new = await store.claim_outbox("slack", 10, 100.0, 60)
        await store.delivered([old], [None], 100.0)
        await store.delivered([new], [None], 5000.0)
        # Copies and ledger entries also expire on their own (if no replica purges).
        seen = redis_server.command("KEYS", "t:seen:*")
        assert len(seen) == 2
        assert 0 < redis_server.command("PTTL", seen[0]) <= 60_000
        ledger_key = redis_server.command("KEYS", "t:ledger:slack:*")[0]
        assert 7_000_000 < redis_server.command("PTTL", ledger_key) <= 7_200_000
        # purge() is exact for the caller's clock, as SQLite's is.
        await store.purge(7300.1, 60, 7200)
        assert await store.ledger_entry("slack", old.alert.episode) is None
        assert await store.ledger_entry("slack", new.alert.episode) == LedgerEntry(5000.0, None)
    finally:
        await store.close()


async def test_queues_from_before_the_destinations_set_are_found(
    redis_server: RedisServer,
) -> None:
    import redis.asyncio

    old = RedisStore(redis_server.url)
    await old.open()
    await old.ingest([alert("legacy")], 100.0, 60)
    items = await old.claim_inbox(10, 100.0, 60)
    await old.plan([i.id for i in items], [planned(items[0].alert, "legacy-dest")], 100.0)
    await old.close()
    # As a version without the set left it: queues, but no `destinations` key.
    raw = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        removed = await raw.delete("alert-router:outbox:destinations")
    finally:
        await raw.aclose()
    assert removed == 1
    new = RedisStore(redis_server.url)
    await new.open()
    try:
        assert await new.queued_destinations() == {"legacy-dest"}
        [item] = await new.claim_outbox("legacy-dest", 10, 100.0, 60)
        await new.delivered([item], [None], 101.0)
        assert await new.queued_destinations() == set()
    finally:
        await new.close()
