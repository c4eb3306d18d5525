"""The history recorder: events kept in memory, written to the store in batches.

`record` is called on the webhook acknowledgement path and in the pipeline's loops, so it
only appends to a buffer: no I/O, no encoding, no await, no exception. `record_later`
takes a function that makes the events, called when the batch is written: what a step
already holds (the webhook's alerts, a routing batch) is kept as is, and no event is built
while a webhook waits for its answer. `run` writes the
buffer every `flush_interval` (sooner when `max_batch` events wait), one `record_history`
call per batch. A store that fails keeps its batch for the next try; the buffer is bounded
all the same, and the oldest events beyond `max_buffer` are dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable

from receiver.events import EpisodeMeta, Event
from receiver.store.base import Store

log = logging.getLogger("alert_router.history")

# What `record_later`'s function returns: events, each with its episode's meta or None.
Recorded = tuple[Event, EpisodeMeta | None]
# The longest the recorder makes events before it lets waiting webhooks be answered.
_SLICE = 0.0005


class HistoryRecorder:
    def __init__(
        self,
        store: Store,
        *,
        flush_interval: float = 0.5,
        max_batch: int = 2000,
        max_buffer: int = 50_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._flush_interval = flush_interval
        self._max_batch = max(1, max_batch)
        self._max_buffer = max(1, max_buffer)
        self._clock = clock
        self._events: deque[Event] = deque()
        # Functions that make events, called at the next flush (`record_later`).
        self._later: deque[Callable[[], Iterable[Recorded]]] = deque()
        # Per episode, the first meta recorded and not yet written.
        self._metas: dict[tuple[str, str], EpisodeMeta] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._closed = False
        # When the store started failing (None: it works); one log line per outage.
        self._failing_since: float | None = None
        # Events dropped because the buffer was full (the store failed for long).
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Events recorded and not yet written (deferred ones not yet made count once)."""
        return len(self._events) + len(self._later)

    def record_later(self, make: Callable[[], Iterable[Recorded]]) -> None:
        """Keep `make`, which returns (event, meta or None) pairs, to be called when the
        next batch is written. Never raises; bounded like the events."""
        try:
            later = self._later
            if len(later) >= self._max_buffer:
                later.popleft()
                self.dropped += 1
            later.append(make)
        except Exception:
            self.dropped += 1

    async def _expand(self) -> None:
        """Make the deferred events: a maker that fails costs its own events only. The
        makers run on the event loop that answers the webhooks, and one maker holds a whole
        step's batch (500 alerts once a storm ends, several events each): waiting webhooks
        are answered between two makers, and within one every `_SLICE` seconds."""
        clock = time.perf_counter
        while self._later:
            make = self._later.popleft()
            try:
                slice_ends = clock() + _SLICE
                for event, meta in make():
                    self.record(event, meta)
                    if clock() >= slice_ends:
                        await asyncio.sleep(0)
                        slice_ends = clock() + _SLICE
            except Exception:
                self.dropped += 1
                log.exception("history events not made")
            await asyncio.sleep(0)

    def record(self, event: Event, meta: EpisodeMeta | None = None) -> None:
        """Keep `event` (and its episode's `meta`) for the next batch."""
        try:
            events = self._events
            if len(events) >= self._max_buffer:
                events.popleft()
                self.dropped += 1
            events.append(event)
            if meta is not None:
                metas = self._metas
                key = (meta.fingerprint, meta.episode)
                if key not in metas:
                    if len(metas) >= self._max_buffer:
                        del metas[next(iter(metas))]
                    metas[key] = meta
            if len(events) >= self._max_batch:
                self._wake.set()
        except Exception:  # never raise: the caller may be acknowledging a webhook
            self.dropped += 1

    async def run(self) -> None:
        """Write the buffer every `flush_interval`, or as soon as `max_batch` events wait,
        until `close`."""
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._flush_interval)
            self._wake.clear()
            if self._closed:
                return
            if not await self.flush():
                # The store fails: wait a whole interval, however full the buffer is.
                await asyncio.sleep(self._flush_interval)

    async def flush(self) -> bool:
        """Write everything buffered, a batch at a time; False when the store failed (the
        batch that failed is kept for the next try)."""
        async with self._lock:
            await self._expand()
            while self._events or self._metas:
                metas, events = self._take()
                try:
                    await self._store.record_history(metas, events)
                except Exception as exc:  # any failure keeps the batch
                    self._put_back(metas, events)
                    self._failed(exc)
                    return False
                self._recovered()
            return True

    # A parameter, not asyncio.timeout around the call: a write cut off mid-batch keeps
    # the batch, and what is left is counted and logged here.
    async def close(self, timeout: float) -> None:  # noqa: ASYNC109
        """Stop `run`, and write what is left within `timeout` seconds."""
        self._closed = True
        self._wake.set()
        deadline = time.monotonic() + timeout
        while self._events or self._metas or self._later:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                if await asyncio.wait_for(self.flush(), left):
                    break
            except TimeoutError:
                break
            await asyncio.sleep(min(self._flush_interval, max(deadline - time.monotonic(), 0)))
        if self._events:
            log.warning(
                "history events not written at shutdown",
                extra={"events": len(self._events), "dropped": self.dropped},
            )

    def _take(self) -> tuple[list[EpisodeMeta], list[Event]]:
        """The next batch: the oldest events, and the metas of their episodes (all the
        metas left once the buffer is empty: their events were dropped)."""
        events = self._events
        count = min(len(events), self._max_batch)
        batch = [events.popleft() for _ in range(count)]
        metas = []
        for event in batch:
            meta = self._metas.pop((event.fingerprint, event.episode), None)
            if meta is not None:
                metas.append(meta)
        if not events and self._metas:
            metas.extend(self._metas.values())
            self._metas.clear()
        return metas, batch

    def _put_back(self, metas: list[EpisodeMeta], batch: list[Event]) -> None:
        """A failed batch goes back in front of what was recorded meanwhile, the buffer
        kept within its bound (the oldest dropped)."""
        events = self._events
        events.extendleft(reversed(batch))
        while len(events) > self._max_buffer:
            events.popleft()
            self.dropped += 1
        for meta in metas:
            self._metas.setdefault((meta.fingerprint, meta.episode), meta)

    def _failed(self, exc: Exception) -> None:
        if self._failing_since is not None:
            return
        self._failing_since = self._clock()
        log.warning(
            "history not written: the store fails; keeping events and trying again",
            extra={"error": str(exc), "buffered": len(self._events)},
        )

    def _recovered(self) -> None:
        if self._failing_since is None:
            return
        log.info(
            "history written again",
            extra={
                "outage_seconds": round(self._clock() - self._failing_since, 3),
                "dropped": self.dropped,
            },
        )
        self._failing_since = None
