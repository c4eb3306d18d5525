"""Housekeeping: queue gauges, purging the ledger and the history, retiring orphaned
notifications."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from receiver.config.rules import Rules
from receiver.history.recorder import HistoryRecorder
from receiver.metrics import Metrics
from receiver.pipeline.scheduler import pause
from receiver.pipeline.tuning import Tuning
from receiver.store.base import Store

log = logging.getLogger("alert_router.pipeline")


class Housekeeping:
    def __init__(
        self,
        store: Store,
        rules: Callable[[], Rules],
        metrics: Metrics,
        *,
        clock: Callable[[], float],
        tuning: Callable[[], Tuning],
        owner: str = "",
        stopping: asyncio.Event | None = None,
        history: HistoryRecorder | None = None,
    ) -> None:
        self._history = history
        # The recorder's dropped events already counted in the metric.
        self._dropped = 0
        # When the history was last purged (monotonic seconds; None: not yet).
        self._history_purged: float | None = None
        self._owner = owner
        self._stopping = stopping or asyncio.Event()
        self._store = store
        self._rules = rules
        self._metrics = metrics
        self._clock = clock
        self._tuning = tuning
        # Destinations with queued notifications that the rules no longer name: since when
        # (monotonic seconds).
        self._orphaned: dict[str, float] = {}

    async def run(self) -> None:
        """Every `housekeeping_interval`, until `stopping` is set (or cancelled)."""
        while not self._stopping.is_set():
            try:
                await self.refresh_gauges()
                t = self._tuning()
                await self._store.purge(self._clock(), t.dedup_window, t.ledger_retention)
                await self.retire_orphans()
                await self.purge_history()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("housekeeping failed", extra={"error": str(exc)})
            await pause(self._stopping, self._tuning().housekeeping_interval)

    async def retire_orphans(self) -> int:
        """Dead-letter the notifications queued for destinations that the rules have not
        named for `orphan_grace` seconds (this process' view); returns how many. Those
        still waiting for a retry go once they are due, at a later call."""
        t = self._tuning()
        orphans = await self._store.queued_destinations() - set(self._rules().destinations)
        seen = time.monotonic()
        self._orphaned = {name: self._orphaned.get(name, seen) for name in orphans}
        total = 0
        for name, since in sorted(self._orphaned.items()):
            if seen - since < t.orphan_grace:
                continue
            error = f"destination {name!r} is no longer in the rules"
            retired = 0
            while True:
                now = self._clock()
                items = await self._store.claim_outbox(
                    name, t.route_batch, now, t.lease, self._owner
                )
                if not items:
                    break
                await self._store.dead_letter(items, error, now)
                retired += len(items)
            if retired:
                self._metrics.notifications.labels(name, "dead_letter").inc(retired)
                log.error(
                    "notifications for a destination no longer in the rules kept as dead"
                    " letters; `alert-router dead-letters retry` queues them again",
                    extra={"destination": name, "count": retired},
                )
            total += retired
        return total

    async def purge_history(self, *, force: bool = False) -> int:
        """Forget the history past its retention and size (at most once every
        `history_purge_interval`, or now with `force`); returns the episodes forgotten.
        Also counts the events the recorder had to drop."""
        if self._history is None:
            return 0
        dropped = self._history.dropped
        if dropped > self._dropped:
            self._metrics.history_dropped.inc(dropped - self._dropped)
            self._dropped = dropped
        t = self._tuning()
        seen = time.monotonic()
        last = self._history_purged
        if not force and last is not None and seen - last < t.history_purge_interval:
            return 0
        self._history_purged = seen
        return await self._store.purge_history(
            self._clock() - t.history_retention, t.history_max_episodes
        )

    async def refresh_gauges(self) -> dict[str, int]:
        """Set the queue-depth and dead-letter gauges from the store; returns the depths."""
        depths = await self._store.depths()
        self._metrics.queue_depth.labels("inbox").set(depths["inbox"])
        self._metrics.queue_depth.labels("outbox").set(depths["outbox"])
        self._metrics.dead_letters.set(depths["dead_letters"])
        return depths
