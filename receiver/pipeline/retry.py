"""After a failed send: a dead letter, or a retry after backoff or after Retry-After.

The notifiers know their vendor's status codes and say whether a failure is worth
retrying (`NotifyError.recoverable`) and when the vendor allows the next request
(`NotifyError.retry_after`, read from the response by `receiver.notify.http`). This module
decides what follows. A permanent failure is kept as a dead letter. A recoverable one is
queued again after exponential backoff with jitter, or, when the vendor gave a
Retry-After, after exactly that long: the whole destination is paused in the store until
then, so no replica sends it anything earlier (delivery's send slot waits the pause out).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from receiver.history.capture import attempt_failed
from receiver.history.recorder import HistoryRecorder
from receiver.metrics import Metrics
from receiver.notify.base import NotifyError
from receiver.pipeline.tuning import Tuning
from receiver.store.base import OutboxItem, Store

log = logging.getLogger("alert_router.pipeline")

# Attempts beyond this no longer double the delay (it is capped long before).
_MAX_DOUBLINGS = 20


@dataclass(frozen=True, slots=True)
class SendFailure:
    """Notifications that failed together, and what the notifier said about it."""

    items: Sequence[OutboxItem]
    error: str
    recoverable: bool
    # Seconds from now before the vendor takes the next request (its Retry-After).
    retry_after: float | None = None
    # The vendor's HTTP status, when it answered one.
    status: int | None = None


def send_failure(items: Sequence[OutboxItem], exc: Exception) -> SendFailure:
    """The failure of sending `items`. Anything but a NotifyError is a notifier bug, which
    must not lose alerts: they are kept and tried again later."""
    if isinstance(exc, NotifyError):
        return SendFailure(items, str(exc), exc.recoverable, exc.retry_after, exc.status)
    return SendFailure(items, type(exc).__name__, True)


def backoff_delay(attempts: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter in [delay/2, delay]."""
    delay = min(cap, base * 2.0 ** min(attempts, _MAX_DOUBLINGS))
    return delay / 2 + rng.random() * delay / 2


class Retries:
    """Records failed sends: dead letters, backoff, the vendor's Retry-After."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        *,
        clock: Callable[[], float],
        tuning: Callable[[], Tuning],
        rng: random.Random,
        history: HistoryRecorder | None = None,
    ) -> None:
        self._history = history
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._tuning = tuning
        self._rng = rng

    async def failed(self, destination: str, failure: SendFailure) -> None:
        items = failure.items
        now = self._clock()
        if not failure.recoverable:
            await self._store.dead_letter(items, failure.error, now)
            self._record(failure, now, None)
            self._metrics.notifications.labels(destination, "dead_letter").inc(len(items))
            log.error(
                "permanent delivery failure; kept as dead letter",
                extra={"destination": destination, "error": failure.error, "count": len(items)},
            )
            return
        t = self._tuning()
        attempts = max(item.attempts for item in items)
        delay = backoff_delay(attempts, t.backoff_base, t.backoff_max, self._rng)
        if failure.retry_after is not None:
            # The vendor said when: no request to this destination before then.
            delay = max(failure.retry_after, 0.0)
            await self._store.pause_destination(destination, now + delay)
        await self._store.reschedule(items, now + delay, failure.error)
        self._record(failure, now, delay)
        self._metrics.notifications.labels(destination, "retried").inc(len(items))
        self._metrics.retries.labels(destination).inc(len(items))
        log.warning(
            "delivery failed; will retry",
            extra={
                "destination": destination,
                "error": failure.error,
                "retry_in": round(delay, 3),
                "count": len(items),
            },
        )

    def _record(self, failure: SendFailure, now: float, retry_in: float | None) -> None:
        """The try in the history; `retry_in` None: it was the last (a dead letter)."""
        if self._history is None:
            return
        self._history.record_later(
            partial(
                attempt_failed,
                failure.items,
                at=now,
                error=failure.error,
                http_status=failure.status,
                recoverable=failure.recoverable,
                retry_in=retry_in,
                retry_after=failure.retry_after,
            )
        )
