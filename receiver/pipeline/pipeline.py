"""The pipeline behind ingest: enrich -> route -> dedup -> deliver -> record.

`Pipeline` starts and stops the loops that drain the store, and rebuilds the
destinations when the rules change. The routing loop (`routing`) takes accepted alerts
from the inbox and queues what each destination should send; one delivery loop per
destination (`delivery`) sends it, with retries (`retry`); housekeeping (`housekeeping`)
keeps the gauges and the ledger; all of them step aside for webhooks (`scheduler`). What
they claim is held (`claims`) and renewed (`heartbeat`) until settled.

A stop is bounded: every loop ends at its next step once told to, a send in flight gets
`send_grace` seconds, the rest is cancelled, and cancelled again (on Python 3.11 a cancel
can be lost: CPython gh-86296, in the `wait_for` inside redis-py's command writes), and
what still runs at `stop_timeout` is abandoned and logged. Then every claim not held by a
send is released, so the other replicas take it at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Collection, Coroutine, Mapping
from typing import Any

from receiver.config.rules import Rules
from receiver.history.recorder import HistoryRecorder
from receiver.metrics import Metrics
from receiver.notify.base import Notifier
from receiver.pipeline.claims import Held, new_owner
from receiver.pipeline.delivery import Delivery, Destination, min_interval
from receiver.pipeline.heartbeat import Heartbeat
from receiver.pipeline.housekeeping import Housekeeping
from receiver.pipeline.reports import ReportScheduler, ReportWork
from receiver.pipeline.retry import Retries
from receiver.pipeline.routing import ContextSource, NoContext, Routing
from receiver.pipeline.scheduler import Scheduler
from receiver.pipeline.tuning import Tuning
from receiver.store.base import Claims, Store, StoreError

log = logging.getLogger("alert_router.pipeline")

# While a stop waits for loops to end, it cancels them again this often.
_RECANCEL_EVERY = 0.1
# Of a stop's time, what is kept for releasing the claims and closing the notifiers after
# the loops (at most; a quarter of a short deadline).
_AFTER_LOOPS = 0.5

NotifierFactory = Callable[[Rules], Mapping[str, Notifier]]


class Pipeline:
    def __init__(
        self,
        store: Store,
        rules: Callable[[], Rules],
        notifiers: NotifierFactory,
        metrics: Metrics,
        *,
        context: ContextSource | None = None,
        clock: Callable[[], float] = time.time,
        tuning: Tuning | None = None,
        rng: random.Random | None = None,
        webhooks_in_flight: Callable[[], int] = lambda: 0,
        owner: str | None = None,
        reports: ReportWork | None = None,
        history: HistoryRecorder | None = None,
    ) -> None:
        """`owner`: the id this pipeline's claims carry (default: unique per pipeline);
        `reports`: how scheduled reports are built and sent (None: not sent); `history`:
        where what routing and delivery decide is recorded (None: not recorded)."""
        self.history = history
        self._rules = rules
        self._store = store
        self._clock = clock
        self._stopping = asyncio.Event()
        self._beat_stopping = asyncio.Event()
        self.held = Held(owner or new_owner(), self._taken_over)
        self._notifier_factory = notifiers
        self._metrics = metrics
        # Replaceable while running (tests shorten a grace): every part reads it anew.
        self.tuning = tuning or Tuning()

        def current() -> Tuning:
            return self.tuning

        self._scheduler = Scheduler(current, webhooks_in_flight)
        self._routing = Routing(
            store,
            rules,
            context or NoContext(),
            metrics,
            self._scheduler,
            self.held,
            clock=clock,
            tuning=current,
            queued=self._queued,
            stopping=self._stopping,
            history=history,
        )
        retries = Retries(
            store, metrics, clock=clock, tuning=current, rng=rng or random.Random(), history=history
        )
        self._delivery = Delivery(
            store,
            metrics,
            retries,
            self._scheduler,
            self.held,
            clock=clock,
            tuning=current,
            stopping=self._stopping,
            history=history,
        )
        self._housekeeping = Housekeeping(
            store,
            rules,
            metrics,
            clock=clock,
            tuning=current,
            owner=self.held.owner,
            stopping=self._stopping,
            history=history,
        )
        self._heartbeat = Heartbeat(
            store, self.held, clock=clock, tuning=current, stopping=self._beat_stopping
        )
        self._reports = (
            None
            if reports is None
            else ReportScheduler(
                store,
                rules,
                reports,
                owner=self.held.owner,
                stopping=self._stopping,
                tuning=current,
            )
        )
        self._beat: asyncio.Task[None] | None = None
        self._destinations: dict[str, Destination] = {}
        self._tasks: list[asyncio.Task[None]] = []
        # Notifiers being closed (replaced or removed by a rules reload); `stop` waits.
        self._closing: set[asyncio.Task[None]] = set()
        self._running = False

    async def start(self) -> None:
        self._running = True
        self._stopping.clear()
        self._beat_stopping.clear()
        self.apply_rules(self._rules())
        self._tasks.append(asyncio.create_task(self._routing.run(), name="route"))
        self._tasks.append(asyncio.create_task(self._housekeeping.run(), name="housekeeping"))
        if self._reports is not None:
            self._tasks.append(asyncio.create_task(self._reports.run(), name="reports"))
        self._beat = asyncio.create_task(self._heartbeat.run(), name="heartbeat")

    async def stop(self, deadline: float | None = None) -> None:
        """Stop every loop, release the claims no send holds, close every notifier; return
        within `deadline` seconds (default `stop_timeout`) whatever the store, the vendors
        or the loops do."""
        loop = asyncio.get_running_loop()
        t = self.tuning
        budget = max(0.0, t.stop_timeout if deadline is None else deadline)
        end = loop.time() + budget
        loops_end = end - min(_AFTER_LOOPS, budget / 4)
        self._running = False
        self._stopping.set()
        self._routing.wake()
        loops: dict[asyncio.Task[None], str | None] = {task: None for task in self._tasks}
        for dest in self._destinations.values():
            dest.wake.set()
            if dest.task is not None:
                loops[dest.task] = dest.name
        # A loop that is not sending ends at its next step or is cancelled in it; one that
        # is sending gets `send_grace` to finish and record the send.
        sending = self.held.sending_to()
        for task, name in loops.items():
            if name not in sending:
                task.cancel()
        await _wait_for(loops, min(loops_end, loop.time() + t.send_grace))
        abandoned = await _cancel(loops, loops_end)
        self._tasks.clear()
        if abandoned:
            log.error(
                "pipeline loops did not end in time; abandoned",
                extra={
                    "loops": sorted(task.get_name() for task in abandoned),
                    "sends_in_flight": self.held.in_flight(),
                },
            )
        if self._beat is not None:
            self._beat_stopping.set()
            await _cancel([self._beat], loops_end)
            self._beat = None
        # What an abandoned loop holds it may still send or route: not released.
        stuck = [loops[task] for task in abandoned]
        releasable = self.held.releasable(
            inbox=None not in stuck, skip=[name for name in stuck if name is not None]
        )
        if releasable:
            await _bounded(self._release(releasable), end)
        for dest in self._destinations.values():
            self._close_later(dest.notifier)
        await self._finish_closing(min(t.close_timeout, max(0.0, end - loop.time())))

    async def _release(self, claims: Claims) -> None:
        if not claims:
            return
        try:
            released = await self._store.release(self.held.owner, claims)
        except StoreError as exc:
            log.warning(
                "releasing claims at stop failed; they wait for their lease",
                extra={"error": str(exc), "lease_s": self.tuning.lease},
            )
            return
        self.held.lost(claims)
        log.info(
            "claims released for the other replicas",
            extra={"count": released, "kept_in_flight": self.held.in_flight()},
        )

    def _taken_over(self, queue: str, count: int) -> None:
        """Claims taken over from an owner whose lease ran out."""
        self._metrics.claims_taken_over.labels(queue).inc(count)

    def apply_rules(self, rules: Rules) -> None:
        """Build notifiers for the destinations of `rules`; start loops for new ones.
        Notifiers replaced or removed are closed in the background."""
        notifiers = self._notifier_factory(rules)
        self._metrics.init_destinations(notifiers)
        for name, notifier in notifiers.items():
            interval = min_interval(rules.destinations[name])
            dest = self._destinations.get(name)
            if dest is None:
                dest = Destination(name, notifier, interval)
                self._destinations[name] = dest
            else:
                if dest.notifier is not notifier:
                    self._close_later(dest.notifier)
                dest.notifier, dest.interval = notifier, interval
            if self._running and (dest.task is None or dest.task.done()):
                dest.task = asyncio.create_task(self._delivery.run(dest), name=f"deliver:{name}")
        for name in set(self._destinations) - set(notifiers):
            dest = self._destinations.pop(name)
            if dest.task is not None:
                dest.task.cancel()
            self._close_later(dest.notifier, after=dest.task)
            log.warning(
                "destination removed from the rules; its queued notifications wait for it,"
                " then become dead letters",
                extra={"destination": name, "grace_s": self.tuning.orphan_grace},
            )

    def wake(self) -> None:
        """New alerts are in the inbox."""
        self._scheduler.webhook_arrived()
        self._routing.wake()

    def _queued(self, name: str) -> None:
        dest = self._destinations.get(name)
        if dest is not None:
            dest.wake.set()

    def _close_later(self, notifier: Notifier, after: asyncio.Task[None] | None = None) -> None:
        """Close `notifier` in a task that `stop` waits for (`apply_rules` cannot await);
        after `after` (the cancelled loop that used it) has ended."""
        task = asyncio.create_task(self._close(notifier, after), name="close-notifier")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, notifier: Notifier, after: asyncio.Task[None] | None) -> None:
        if after is not None:
            # `wait`, not `await`: the loop's CancelledError is not this task's.
            await asyncio.wait([after])
        try:
            await notifier.aclose()
        except Exception as exc:
            # The notifier is not used again; only its connection may linger.
            log.warning("closing a notifier failed", extra={"error": str(exc)})

    async def _finish_closing(self, seconds: float) -> None:
        """Wait for the notifiers being closed, at most `seconds`; cancel the rest."""
        if not self._closing:
            return
        _, late = await asyncio.wait(set(self._closing), timeout=max(seconds, 0.001))
        if not late:
            return
        await _cancel(late, asyncio.get_running_loop().time() + 1.0)
        log.warning(
            "closing notifiers took too long; cancelled",
            extra={"count": len(late), "timeout_s": seconds},
        )


async def _wait_for(tasks: Collection[asyncio.Task[Any]], until: float) -> None:
    """Until every task is done, or the loop's clock reaches `until`."""
    pending = [task for task in tasks if not task.done()]
    left = until - asyncio.get_running_loop().time()
    if pending and left > 0:
        await asyncio.wait(pending, timeout=left)


async def _cancel(tasks: Collection[asyncio.Task[Any]], until: float) -> set[asyncio.Task[Any]]:
    """Cancel `tasks`, and again while they run (a cancel can be swallowed), until `until`;
    returns those still running then. Their outcomes are retrieved, so none is reported as
    never retrieved."""
    loop = asyncio.get_running_loop()
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        left = until - loop.time()
        if left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(left, _RECANCEL_EVERY))
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error(
                "pipeline task failed",
                extra={"task": task.get_name(), "error": str(task.exception())},
            )
    return pending


async def _bounded(work: Coroutine[Any, Any, None], until: float) -> None:
    """Run `work`, cancelled if it is still running at `until`."""
    task = asyncio.create_task(work, name="pipeline-stop")
    await _wait_for([task], until)
    if await _cancel([task], until):
        log.error("releasing claims at stop did not finish in time; abandoned")
