"""The Redis store when Redis restarts, stops, hangs or refuses writes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from receiver.store.base import StoreError
from receiver.store.redis.store import RedisStore
from tests.fakes.redis import RedisServer
from tests.store.test_contract import alert

RedisFactory = Callable[..., RedisServer]


async def _ingest_through_a_crash(server: RedisServer, count: int) -> tuple[set[str], RedisStore]:
    """Send `count` single-alert webhooks, retrying each until answered (as Alertmanager
    does), while Redis is killed with SIGKILL and started again mid-run. Returns the
    fingerprints Redis acknowledged and the (still open) store."""
    store = RedisStore(server.url, socket_timeout=2.0)
    await store.open()
    acked: set[str] = set()
    failures = 0

    async def send(fp: str) -> None:
        nonlocal failures
        while True:
            try:
                await store.ingest([alert(fp)], 100.0, 60)
            except StoreError:
                failures += 1
                await asyncio.sleep(0.02)
                continue
            acked.add(fp)
            return

    async def crash() -> None:
        while len(acked) < count // 3:
            await asyncio.sleep(0.005)
        await asyncio.to_thread(server.kill)
        await asyncio.sleep(0.1)
        await asyncio.to_thread(server.start)

    async def paced() -> None:
        for start in range(0, count, 20):
            await asyncio.gather(*(send(f"fp{i:04d}") for i in range(start, start + 20)))

    await asyncio.gather(paced(), crash())
    # The crash hit webhooks in flight (else the test proves nothing).
    assert failures > 0
    return acked, store


async def test_redis_restart_with_aof_loses_no_accepted_alert(
    redis_factory: RedisFactory,
) -> None:
    server = redis_factory(appendonly=True)
    acked, store = await _ingest_through_a_crash(server, 600)
    try:
        assert len(acked) == 600
        items = await store.claim_inbox(10_000, 100.0, 60)
        fingerprints = [i.alert.fingerprint for i in items]
        assert sorted(fingerprints) == sorted(acked)  # all there, none twice
    finally:
        await store.close()


async def test_without_aof_a_redis_restart_loses_the_queue(redis_factory: RedisFactory) -> None:
    # The control for the test above, and what the README warns about.
    server = redis_factory(appendonly=False)
    acked, store = await _ingest_through_a_crash(server, 300)
    try:
        items = await store.claim_inbox(10_000, 100.0, 60)
        assert len(items) < len(acked)
    finally:
        await store.close()


async def test_redis_down_fails_fast_and_work_resumes(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, socket_timeout=1.0)
    await store.open()
    try:
        await store.ingest([alert("before")], 100.0, 60)
        redis_server.stop()
        for operation in (
            store.ingest([alert("during")], 101.0, 60),
            store.check_writable(),
            store.claim_inbox(10, 101.0, 60),
            store.depths(),
        ):
            started = time.monotonic()
            with pytest.raises(StoreError, match="Redis store"):
                await operation
            assert time.monotonic() - started < 1.0
        redis_server.start()
        # The same store object: no reopen.
        await store.check_writable()
        assert (await store.ingest([alert("after")], 102.0, 60)).accepted == 1
        items = await store.claim_inbox(10, 102.0, 60)
        assert [i.alert.fingerprint for i in items] == ["after"]  # no AOF here: "before" lost
    finally:
        await store.close()


async def test_hung_redis_times_out_within_socket_timeout(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, socket_timeout=0.5)
    await store.open()
    try:
        await store.check_writable()
        redis_server.pause()
        try:
            for operation in (store.ingest([alert()], 100.0, 60), store.check_writable()):
                started = time.monotonic()
                with pytest.raises(StoreError, match="Timeout"):
                    await operation
                assert time.monotonic() - started < 1.5
        finally:
            redis_server.resume()
        await store.check_writable()
        assert (await store.depths())["inbox"] in (0, 1)  # the timed-out ingest may have run
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("setup", "undo", "error"),
    [
        # A replica (e.g. after a failover the Service still points at the old primary).
        (("REPLICAOF", "127.0.0.1", "1"), ("REPLICAOF", "NO", "ONE"), "read only replica"),
        # min-replicas-to-write not met.
        (
            ("CONFIG", "SET", "min-replicas-to-write", "1"),
            ("CONFIG", "SET", "min-replicas-to-write", "0"),
            "NOREPLICAS",
        ),
    ],
)
async def test_redis_refusing_writes_is_a_store_error(
    redis_server: RedisServer, setup: tuple[str, ...], undo: tuple[str, ...], error: str
) -> None:
    store = RedisStore(redis_server.url)
    await store.open()
    try:
        redis_server.command(*setup)
        with pytest.raises(StoreError, match=error):
            await store.check_writable()
        with pytest.raises(StoreError, match=error):
            await store.ingest([alert()], 100.0, 60)
        redis_server.command(*undo)
        await store.check_writable()
        assert (await store.ingest([alert()], 100.0, 60)).accepted == 1
    finally:
        await store.close()
