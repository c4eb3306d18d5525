"""Recording an accepted send on a real SQLite store that another process holds locked:
the ledger write is tried again for up to half the lease, and then the failure is raised,
so that the delivery loop lets the claim lapse instead of taking the send for recorded."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from receiver.config.secrets import SecretStore
from receiver.metrics import Metrics
from receiver.models import Alert, CostContext
from receiver.notify.slack.webhook import SlackWebhookNotifier
from receiver.pipeline.delivered import Recording
from receiver.pipeline.tuning import Tuning
from receiver.store.base import OutboxItem, Planned, StoreError
from receiver.store.sqlite.store import SqliteStore

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
ALERT = Alert(
    fingerprint="f1",
    status="firing",
    labels={"alertname": "HighGPUCost", "service": "trainer"},
    annotations={"summary": "trainer costs"},
    starts_at=T0,
    ends_at=None,
)
REF = {"channel": "C1", "ts": "1700000000.000100"}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    # A short busy timeout: each try against the lock fails fast.
    s = SqliteStore(tmp_path / "state.db", busy_timeout=0.05)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def notifier(tmp_path: Path) -> SlackWebhookNotifier:
    # Only named: with no history, recording never calls the vendor.
    return SlackWebhookNotifier("finops", SecretStore(tmp_path, environ={}).source("hook"))


async def queued(store: SqliteStore) -> OutboxItem:
    """One notification for `finops`, claimed for sending, as delivery holds it."""
    await store.ingest([ALERT], 100.0, 60)
    [inbox] = await store.claim_inbox(10, 100.0, 60)
    planned = Planned("finops", "costs", 3600, True, inbox.alert, CostContext(), 100.0)
    await store.plan([inbox.id], [planned], 100.0)
    [item] = await store.claim_outbox("finops", 10, 100.0, 60)
    return item


class Lock:
    """Another connection, as another process would hold it: an exclusive transaction on
    the file, which every write of the store waits for and then fails on."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self._conn.execute("ROLLBACK")
        self._conn.close()


def recording(store: SqliteStore, metrics: Metrics, lease: float) -> Recording:
    return Recording(
        store, metrics, clock=lambda: 200.0, tuning=lambda: replace(Tuning(), lease=lease)
    )


def delivered_count(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value(
        "alert_router_notifications_total", {"destination": "finops", "outcome": "delivered"}
    )
    return value or 0.0


async def test_a_refused_ledger_write_is_tried_again_until_the_store_takes_it(
    store: SqliteStore, notifier: SlackWebhookNotifier, caplog: pytest.LogCaptureFixture
) -> None:
    item = await queued(store)
    metrics = Metrics(CollectorRegistry())
    lock = Lock(store.path)
    # The lock goes after several tries have failed; half the lease (6 s) is far off.
    releaser = threading.Timer(0.6, lock.release)
    releaser.start()
    try:
        with caplog.at_level(logging.WARNING, logger="alert_router.pipeline"):
            await asyncio.wait_for(
                recording(store, metrics, lease=12.0).delivered("finops", notifier, [item], [REF]),
                10.0,
            )
    finally:
        releaser.join()
    retried = [
        r for r in caplog.records if r.getMessage() == "recording a delivery failed; retrying"
    ]
    assert len(retried) >= 2
    assert all(r.__dict__["destination"] == "finops" for r in retried)
    assert "locked" in retried[0].__dict__["error"]
    entry = await store.ledger_entry("finops", ALERT.episode)
    assert entry is not None and entry.firing_at == 200.0 and entry.ref == REF
    # The notification left the queue, and it counts once.
    assert await store.claim_outbox("finops", 10, 1000.0, 60) == []
    assert delivered_count(metrics) == 1.0


async def test_a_store_that_stays_locked_past_half_the_lease_raises(
    store: SqliteStore, notifier: SlackWebhookNotifier
) -> None:
    item = await queued(store)
    metrics = Metrics(CollectorRegistry())
    lock = Lock(store.path)
    try:
        with pytest.raises(StoreError, match="locked"):
            await asyncio.wait_for(
                recording(store, metrics, lease=1.0).delivered("finops", notifier, [item], [REF]),
                10.0,
            )
    finally:
        lock.release()
    # Not recorded, not counted: once its claim lapses the notification is sent again.
    assert await store.ledger_entry("finops", ALERT.episode) is None
    assert delivered_count(metrics) == 0.0
    [again] = await store.claim_outbox("finops", 10, 1000.0, 60)
    assert again.id == item.id
