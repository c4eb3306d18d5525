"""Answering webhooks comes first: when the pipeline's loops step aside for them.

Alertmanager waits for each answer and re-sends what is slow, and what is accepted is
already durable, so under load the answers win. While webhooks arrive the loops work in
small batches; when they queue up (the CPU is saturated) the loops pause after each step,
so that together they keep only about `Tuning.pipeline_share` of the time, and a long
storm still drains: no loop pauses longer than `MAX_PAUSE` at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from receiver.pipeline.tuning import Tuning

# Webhooks count as a storm until this long after the last one arrived.
STORM_QUIET = 1.0
# Webhooks count as queuing up until this long after `queued_webhooks` were last seen in
# flight. Under a flood the count dips between two commits (a commit answers the whole
# group at once, and the senders' next webhooks are still on their way): without this
# memory a loop would take the core for a whole step in every dip.
QUEUE_MEMORY = 0.05
# The longest a loop pauses at once, however much the loops owe: each loop still takes a
# step at least this often, so a storm of any length drains.
MAX_PAUSE = 1.0
# How often a pause looks whether the webhooks still queue up.
_POLL = 0.005


class Scheduler:
    """Tells the loops whether webhooks are arriving, and makes them step aside.

    The share is the loops' together, not each loop's: routing and every delivery loop
    run on the same core as the answers, and a share each would hand a storm's CPU to
    the pipeline in proportion to the number of destinations.
    """

    def __init__(
        self,
        tuning: Callable[[], Tuning],
        webhooks_in_flight: Callable[[], int],
        *,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`clock` (seconds, monotonic) and `sleep` are the pause's own, for tests."""
        self._tuning = tuning
        self._in_flight = webhooks_in_flight
        self._clock = clock
        self._sleep = sleep
        self._last_webhook = -1e9
        self._queued_at = -1e9
        # Until when the loops together owe the webhooks the time they took: each step
        # adds its time, scaled by how much more the webhooks get (1 / share - 1).
        self._owed_until = -1e9

    def webhook_arrived(self) -> None:
        self._last_webhook = self._clock()

    @property
    def storm(self) -> bool:
        """Whether webhooks arrived within the last `STORM_QUIET` seconds."""
        return self._clock() - self._last_webhook < STORM_QUIET

    def queuing(self) -> bool:
        """Whether webhooks queue up: `queued_webhooks` or more in flight now, or within
        the last `QUEUE_MEMORY` seconds."""
        now = self._clock()
        if self._in_flight() >= self._tuning().queued_webhooks:
            self._queued_at = now
            return True
        return now - self._queued_at < QUEUE_MEMORY

    async def yield_to_webhooks(self, started: float) -> None:
        """After a pipeline step that began at `started` (this scheduler's clock, see
        `now`): while webhooks queue up, pause until the loops' steps add up to about
        `pipeline_share` of the time; stop pausing as soon as they no longer queue up."""
        if not self.queuing():
            return
        share = min(max(self._tuning().pipeline_share, 0.01), 1.0)
        now = self._clock()
        # A step's time counts whole, its awaits too (the webhooks ran during them): the
        # loops get at most their share, never more.
        owed = max(self._owed_until, now) + (now - started) * (1 / share - 1)
        self._owed_until = min(owed, now + MAX_PAUSE)
        while self.queuing():
            left = self._owed_until - self._clock()
            if left <= 0:
                break
            await self._sleep(min(left, _POLL))

    def now(self) -> float:
        """The time a step begins, for `yield_to_webhooks`."""
        return self._clock()


async def wait_for_wake(event: asyncio.Event, seconds: float) -> None:
    """Until `event` is set or `seconds` pass. Loops clear the event before their work,
    so a wake-up that arrives during the work is not lost."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


async def pause(stopping: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if the pipeline is told to stop meanwhile."""
    await wait_for_wake(stopping, seconds)
