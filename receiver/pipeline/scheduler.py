"""Answering webhooks comes first: when the pipeline's loops step aside for them.

Alertmanager waits for each answer and re-sends what is slow, and what is accepted is
already durable, so under load the answers win. While webhooks arrive the loops work in
small batches; when they queue up (the CPU is saturated) a loop pauses after each step so
that it keeps only about `Tuning.pipeline_share` of the time, and a long storm still drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from receiver.pipeline.tuning import Tuning

# Webhooks count as a storm until this long after the last one arrived.
STORM_QUIET = 1.0


class Scheduler:
    """Tells the loops whether webhooks are arriving, and makes them step aside."""

    def __init__(self, tuning: Callable[[], Tuning], webhooks_in_flight: Callable[[], int]) -> None:
        self._tuning = tuning
        self._in_flight = webhooks_in_flight
        self._last_webhook = -1e9

    def webhook_arrived(self) -> None:
        self._last_webhook = time.monotonic()

    @property
    def storm(self) -> bool:
        """Whether webhooks arrived within the last `STORM_QUIET` seconds."""
        return time.monotonic() - self._last_webhook < STORM_QUIET

    async def yield_to_webhooks(self, started: float) -> None:
        """After a pipeline step that began at `started` (perf_counter): while webhooks
        queue up, pause so that the step's loop keeps only about `pipeline_share` of the
        time; stop pausing as soon as the queue is short again."""
        t = self._tuning()
        if self._in_flight() < t.queued_webhooks:
            return
        share = min(max(t.pipeline_share, 0.01), 1.0)
        until = time.perf_counter() + min((time.perf_counter() - started) * (1 / share - 1), 1.0)
        while self._in_flight() >= t.queued_webhooks:
            left = until - time.perf_counter()
            if left <= 0:
                break
            await asyncio.sleep(min(left, 0.005))


async def wait_for_wake(event: asyncio.Event, seconds: float) -> None:
    """Until `event` is set or `seconds` pass. Loops clear the event before their work,
    so a wake-up that arrives during the work is not lost."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


async def pause(stopping: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if the pipeline is told to stop meanwhile."""
    await wait_for_wake(stopping, seconds)
