"""What follows a send a destination accepted: the ledger, the history, metrics and a log line.

The ledger is written here and only here, after the vendor accepted the message
(Alertmanager's SetNotifiesStage): a send that failed never reaches this module, so it
is sent again instead of being taken for done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial

from receiver.history.capture import delivered
from receiver.history.recorder import HistoryRecorder
from receiver.metrics import Metrics
from receiver.notify.base import Notifier, Ref
from receiver.pipeline.tuning import Tuning
from receiver.store.base import OutboxItem, Store, StoreError

log = logging.getLogger("alert_router.pipeline")

# Pause between two tries to record a delivery that the store refused.
_RECORD_RETRY = 0.2


class Recording:
    """Records the sends of every destination that the vendor accepted."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        *,
        clock: Callable[[], float],
        tuning: Callable[[], Tuning],
        history: HistoryRecorder | None = None,
    ) -> None:
        self._clock = clock
        self._store = store
        self._metrics = metrics
        self._tuning = tuning
        self._history = history

    async def delivered(
        self,
        name: str,
        notifier: Notifier,
        items: Sequence[OutboxItem],
        refs: Sequence[Ref | None],
    ) -> None:
        """Record that destination `name` accepted `items` (one message, or a round of
        single sends), with the vendor's reference of each message."""
        done = self._clock()
        await self._ledger(name, items, refs, done)
        if self._history is not None:
            link = await _permalink(notifier, refs) if len(items) == 1 else None
            self._history.record_later(partial(delivered, items, refs, at=done, permalink=link))
        self._metrics.notifications.labels(name, "delivered").inc(len(items))
        latency = self._metrics.delivery_latency.labels(name)
        for item in items:
            latency.observe(max(0.0, done - item.received_at))
        # One line per send (a digest, or a round of parallel sends), naming each alert.
        log.info(
            "delivered",
            extra={
                "destination": name,
                "count": len(items),
                "alerts": [
                    {
                        "alertname": item.alert.name,
                        "episode": item.alert.episode,
                        "status": item.alert.status,
                        "reason": item.reason.value,
                    }
                    for item in items
                ],
            },
        )

    async def _ledger(
        self, name: str, items: Sequence[OutboxItem], refs: Sequence[Ref | None], done: float
    ) -> None:
        """Write the ledger for a send that happened. The store may fail once (a Redis
        connection that went stale across a restart): recording is idempotent, so try again
        for up to half the lease, rather than letting the lease expire and the message go
        out twice."""
        deadline = time.monotonic() + self._tuning().lease / 2
        while True:
            try:
                await self._store.delivered(items, refs, done)
                return
            except StoreError as exc:
                if time.monotonic() >= deadline:
                    raise
                log.warning(
                    "recording a delivery failed; retrying",
                    extra={"destination": name, "error": str(exc)},
                )
                await asyncio.sleep(_RECORD_RETRY)


async def _permalink(notifier: Notifier, refs: Sequence[Ref | None]) -> str | None:
    """The Slack link of a bot's one message, for the history (None: no bot, or unknown)."""
    link = getattr(notifier, "permalink", None)
    ref = refs[0] if refs else None
    if link is None or ref is None:
        return None
    try:
        found = await link(ref)
    except Exception:  # the delivery is recorded; only the link is missing
        log.warning("permalink failed", exc_info=True)
        return None
    return found if isinstance(found, str) else None
