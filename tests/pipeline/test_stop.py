"""`Pipeline.stop` in every state returns in bounded time, and hands the work over: claims
not held by a send are released at once; a slow send keeps its own claims (the heartbeat)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from receiver.config.rules import Rules, parse_rules
from receiver.metrics import Metrics
from receiver.models import Notification
from receiver.notify.base import Notifier, Ref
from receiver.pipeline.pipeline import Pipeline
from receiver.pipeline.tuning import Tuning
from receiver.store.base import Store
from receiver.store.redis.store import RedisStore
from receiver.store.sqlite.store import SqliteStore
from tests.fakes.redis import RedisServer
from tests.pipeline.test_pipeline import make_alert, rules_to

FAST = Tuning(
    poll_interval=0.02,
    housekeeping_interval=0.05,
    close_timeout=0.2,
    send_grace=0.5,
    stop_timeout=2.0,
)
# How much later than its deadline a stop may return (the event loop's own latency).
SLACK_S = 0.5


class SlowNotifier:
    """Takes `delay` seconds a send; `swallow`: ignores that many cancels of a send first
    (CPython gh-86296: on 3.11 a `wait_for` whose inner call just finished loses a cancel);
    `forever`: never returns."""

    max_batch = 1

    def __init__(self, delay: float = 0.0, *, swallow: int = 0, forever: bool = False) -> None:
        self.delay = delay
        self.swallow = swallow
        self.forever = forever
        self.sent: list[str] = []
        self.started = asyncio.Event()

    async def notify(self, batch: Sequence[Notification]) -> Sequence[Ref | None]:
        self.started.set()
        deadline = time.monotonic() + self.delay
        while self.forever or time.monotonic() < deadline:
            try:
                await asyncio.sleep(max(0.01, deadline - time.monotonic()))
            except asyncio.CancelledError:
                if self.swallow <= 0:
                    raise
                self.swallow -= 1
        self.sent.extend(n.alert.name for n in batch)
        return [None for _ in batch]

    def render(self, batch: Sequence[Notification]) -> list[dict[str, Any]]:
        return []

    async def aclose(self) -> None:
        return None


def only(notifier: SlowNotifier) -> Callable[[Rules], Mapping[str, Notifier]]:
    return lambda rules: {name: notifier for name in rules.destinations}


class SwallowingStore:
    """A store whose `depths` (housekeeping) loses the cancels it gets, `times` of them
    (-1: every one for `hold` seconds, then it gives in, so that the test's event loop can
    close), as redis-py's command write can on Python 3.11."""

    def __init__(self, inner: Store, times: int, hold: float = 4.0) -> None:
        self._inner = inner
        self._times = times
        self._until = time.monotonic() + hold

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def depths(self) -> dict[str, int]:
        empty = {"inbox": 0, "outbox": 0, "dead_letters": 0}
        while True:
            try:
                await asyncio.sleep(0.05 if self._times < 0 else 3600)
            except asyncio.CancelledError:
                if self._times == 0:
                    raise
                if self._times > 0:
                    # The call's reply arrived with the cancel: it returns, cancel lost.
                    self._times -= 1
                    return empty
            if self._times < 0 and time.monotonic() > self._until:
                return empty


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteStore]:
    yield SqliteStore(tmp_path / "state.db")


def leases(path: Path) -> dict[str, int]:
    """Rows of the inbox and outbox whose claim runs now."""
    conn = sqlite3.connect(path)
    try:
        now = time.time()
        return {
            table: int(
                conn.execute(
                    f"SELECT count(*) FROM {table} WHERE lease_until > ?",  # noqa: S608
                    (now,),
                ).fetchone()[0]
            )
            for table in ("inbox", "outbox")
        }
    finally:
        conn.close()


async def timed_stop(pipeline: Pipeline, bound: float) -> float:
    started = time.monotonic()
    # Bounded here too, so that a stop that never returns fails instead of hanging.
    await asyncio.wait_for(pipeline.stop(), bound + 5.0)
    elapsed = time.monotonic() - started
    assert elapsed < bound, f"stop took {elapsed:.1f}s"
    return elapsed


# -- loops stop when told --------------------------------------------------------------------


async def test_a_loop_that_lost_its_cancel_still_ends(sqlite_store: SqliteStore) -> None:
    """The bind-failure hang: a loop whose one cancel was swallowed went round again, and
    `stop` awaited it forever. Now the loop sees the stop and ends."""
    await sqlite_store.open()
    store: Any = SwallowingStore(sqlite_store, times=1)
    pipeline = Pipeline(
        store, lambda: rules_to("hook"), only(SlowNotifier()), Metrics(), tuning=FAST
    )
    await pipeline.start()
    await asyncio.sleep(0.1)  # housekeeping waits in depths()
    await timed_stop(pipeline, FAST.send_grace + 1.0)
    await sqlite_store.close()


async def test_a_loop_that_never_ends_is_abandoned_at_the_deadline(
    sqlite_store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    await sqlite_store.open()
    store: Any = SwallowingStore(sqlite_store, times=-1)
    pipeline = Pipeline(
        store, lambda: rules_to("hook"), only(SlowNotifier()), Metrics(), tuning=FAST
    )
    await pipeline.start()
    await asyncio.sleep(0.1)
    with caplog.at_level(logging.ERROR, logger="alert_router.pipeline"):
        elapsed = await timed_stop(pipeline, FAST.stop_timeout + SLACK_S)
    # It waited for the loop up to the deadline (less what is kept for the release).
    assert elapsed >= FAST.stop_timeout / 2
    [abandoned] = [r for r in caplog.records if "abandoned" in r.getMessage()]
    assert abandoned.__dict__["loops"] == ["housekeeping"]
    await sqlite_store.close()


# -- the vendor down ------------------------------------------------------------------------


async def test_a_hanging_send_gets_its_grace_then_is_cancelled_and_keeps_its_claim(
    sqlite_store: SqliteStore,
) -> None:
    await sqlite_store.open()
    # The vendor never answers, and the client loses the first cancel (gh-86296).
    notifier = SlowNotifier(forever=True, swallow=1)
    pipeline = Pipeline(
        sqlite_store, lambda: rules_to("pd"), only(notifier), Metrics(), tuning=FAST
    )
    await pipeline.start()
    await sqlite_store.ingest([make_alert("Hung")], time.time(), 0.0)
    pipeline.wake()
    await asyncio.wait_for(notifier.started.wait(), 5)
    elapsed = await timed_stop(pipeline, FAST.stop_timeout + SLACK_S)
    assert elapsed >= FAST.send_grace - 0.05  # the send had its grace first
    await sqlite_store.close()
    # The send may have reached the vendor: its claim is kept (until the lease runs out),
    # never released for another replica to send it again.
    assert leases(sqlite_store.path) == {"inbox": 0, "outbox": 1}


# -- mid-storm -------------------------------------------------------------------------------


async def test_a_stop_mid_storm_releases_every_claim_not_being_sent(
    sqlite_store: SqliteStore,
) -> None:
    await sqlite_store.open()
    notifier = SlowNotifier(0.05)
    # Slack at 20 messages/s: the loop claims its next message ahead of its send slot.
    hook = parse_rules(
        "destinations:\n"
        "  hook: {slack: {webhook_url: {secret: slack-webhook-url}, max_per_second: 20}}\n"
        "  pd: {pagerduty: {routing_key: {secret: pagerduty-key}, max_per_minute: 0}}\n"
        "routes:\n  - name: everything\n    to: [hook, pd]\n",
        Path("routes.yaml"),
    )
    pipeline = Pipeline(sqlite_store, lambda: hook, only(notifier), Metrics(), tuning=FAST)
    await pipeline.start()
    now = time.time()
    for batch in range(20):
        await sqlite_store.ingest([make_alert(f"S{batch}-{i}") for i in range(20)], now, 0.0)
        pipeline.wake()
    await asyncio.sleep(0.3)
    assert notifier.sent, "nothing was sent before the stop"
    await timed_stop(pipeline, FAST.send_grace + 1.0)
    await sqlite_store.close()
    # Sends in flight finished within the grace and were recorded; everything else claimed
    # (alerts being routed, notifications waiting for their slot) is free at once.
    assert leases(sqlite_store.path) == {"inbox": 0, "outbox": 0}
    depths = await _depths(sqlite_store.path)
    assert depths["inbox"] + depths["outbox"] > 0, "the storm ended before the stop"


async def _depths(path: Path) -> dict[str, int]:
    store = SqliteStore(path, read_only=True)
    await store.open()
    try:
        return await store.depths()
    finally:
        await store.close()


# -- the store down --------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["stopped", "hung"])
async def test_stop_is_bounded_with_redis_down(redis_server: RedisServer, how: str) -> None:
    store = RedisStore(redis_server.url, socket_timeout=5.0)
    await store.open()
    notifier = SlowNotifier(0.05)
    pipeline = Pipeline(
        store, lambda: rules_to("hook", "pd"), only(notifier), Metrics(), tuning=FAST
    )
    await pipeline.start()
    await store.ingest([make_alert(f"R{i}") for i in range(50)], time.time(), 0.0)
    pipeline.wake()
    await asyncio.sleep(0.2)
    if how == "stopped":
        redis_server.stop()
    else:
        redis_server.pause()  # connections stay open and nothing answers
    await asyncio.sleep(0.3)
    try:
        await timed_stop(pipeline, FAST.stop_timeout + SLACK_S)
    finally:
        if how == "hung":
            redis_server.resume()
        await asyncio.wait_for(store.close(), 5)


# -- the heartbeat ---------------------------------------------------------------------------


async def test_a_slow_send_keeps_its_claim_past_the_lease(sqlite_store: SqliteStore) -> None:
    await sqlite_store.open()
    lease = 0.6
    notifier = SlowNotifier(3 * lease)
    tuning = Tuning(poll_interval=0.02, housekeeping_interval=0.05, lease=lease)
    pipeline = Pipeline(
        sqlite_store, lambda: rules_to("pd"), only(notifier), Metrics(), tuning=tuning
    )
    await pipeline.start()
    await sqlite_store.ingest([make_alert("Slow")], time.time(), 0.0)
    pipeline.wake()
    await asyncio.wait_for(notifier.started.wait(), 5)
    # Well past the first lease, the send still runs: another replica gets nothing.
    await asyncio.sleep(2 * lease)
    assert await sqlite_store.claim_outbox("pd", 10, time.time(), lease, "other") == []
    await asyncio.wait_for(_until(lambda: notifier.sent == ["Slow"]), 5)
    await pipeline.stop()
    assert (await sqlite_store.depths())["outbox"] == 0
    await sqlite_store.close()


async def _until(done: Callable[[], bool]) -> None:
    while not done():
        await asyncio.sleep(0.02)
