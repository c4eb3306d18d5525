"""The pipeline's loops step aside for webhooks: together they keep about their share of
the time while webhooks queue up, through the dips between two commits, and never pause
so long that a storm stops draining."""

from __future__ import annotations

import asyncio

import pytest

from receiver.pipeline.scheduler import MAX_PAUSE, QUEUE_MEMORY, Scheduler
from receiver.pipeline.tuning import Tuning

SHARE = 0.1
QUEUED = 4


class Clock:
    """A clock that only the pauses move: a sleep of `s` begun at `t` wakes at `t + s`,
    and pauses that overlap move it once, as real time would."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        wakes = self.now + seconds
        await asyncio.sleep(0)
        self.now = max(self.now, wakes)


def make(in_flight: list[int], share: float = SHARE) -> tuple[Scheduler, Clock]:
    clock = Clock()
    tuning = Tuning(pipeline_share=share, queued_webhooks=QUEUED)
    scheduler = Scheduler(lambda: tuning, lambda: in_flight[0], clock=clock, sleep=clock.sleep)
    return scheduler, clock


def step(clock: Clock, seconds: float) -> float:
    """A step of `seconds` that ends now: returns when it began."""
    started = clock.now
    clock.now += seconds
    return started


def test_no_pause_while_webhooks_do_not_queue_up() -> None:
    scheduler, clock = make([QUEUED - 1])
    started = step(clock, 0.01)
    asyncio.run(scheduler.yield_to_webhooks(started))
    assert clock.slept == []


def test_a_step_is_followed_by_a_pause_that_leaves_the_webhooks_the_rest() -> None:
    scheduler, clock = make([QUEUED])
    started = step(clock, 0.01)
    before = clock.now
    asyncio.run(scheduler.yield_to_webhooks(started))
    # 10 ms of work at a share of 0.1: 90 ms for the webhooks.
    assert clock.now - before == pytest.approx(0.09)
    assert max(clock.slept) <= 0.005  # it looks at the queue while it waits


def test_the_share_is_the_loops_together_not_each_loops() -> None:
    """Two loops whose steps end together pause until both steps are paid for."""
    scheduler, clock = make([QUEUED])
    first = step(clock, 0.01)
    second = first  # the other loop's step ran over the same 10 ms
    before = clock.now

    async def both() -> None:
        await asyncio.gather(
            scheduler.yield_to_webhooks(first), scheduler.yield_to_webhooks(second)
        )

    asyncio.run(both())
    # Each step adds its 90 ms: the loops resume 180 ms later, not 90.
    assert clock.now - before == pytest.approx(0.18)


def test_a_dip_in_the_queue_between_commits_still_counts_as_queuing() -> None:
    in_flight = [QUEUED]
    scheduler, clock = make(in_flight)
    assert scheduler.queuing()
    in_flight[0] = 0  # a commit answered its whole group
    clock.now += QUEUE_MEMORY / 2
    assert scheduler.queuing()
    started = step(clock, 0.01)  # 90 ms owed
    before = clock.now
    asyncio.run(scheduler.yield_to_webhooks(started))
    # It pauses for as long as the memory lasts, then goes on without the rest of its pause.
    memory_left = QUEUE_MEMORY / 2 - 0.01
    assert memory_left <= clock.now - before <= memory_left + 0.005
    assert not scheduler.queuing()


def test_the_pause_ends_as_soon_as_the_webhooks_stop_queuing() -> None:
    in_flight = [QUEUED]
    scheduler, clock = make(in_flight)
    started = step(clock, 0.1)  # 900 ms owed
    before = clock.now

    async def run() -> None:
        waiting = asyncio.ensure_future(scheduler.yield_to_webhooks(started))
        while clock.now - before < 0.02:
            await asyncio.sleep(0)
        in_flight[0] = 0
        await waiting

    asyncio.run(run())
    assert clock.now - before < 0.02 + QUEUE_MEMORY + 0.01


def test_no_loop_pauses_longer_than_the_bound_however_much_is_owed() -> None:
    scheduler, clock = make([QUEUED], share=0.01)
    for _ in range(3):
        started = step(clock, 0.5)  # 49.5 s owed a step at a share of 0.01
        before = clock.now
        asyncio.run(scheduler.yield_to_webhooks(started))
        assert clock.now - before == pytest.approx(MAX_PAUSE)


def test_a_storm_is_webhooks_within_the_last_second() -> None:
    scheduler, clock = make([0])
    assert not scheduler.storm
    scheduler.webhook_arrived()
    clock.now += 0.5
    assert scheduler.storm
    clock.now += 0.6
    assert not scheduler.storm
