"""The pipeline behind ingest: enrich -> route -> dedup -> deliver -> record.

`Pipeline` starts and stops the loops that drain the store, and rebuilds the
destinations when the rules change. The routing loop (`routing`) takes accepted alerts
from the inbox and queues what each destination should send; one delivery loop per
destination (`delivery`) sends it, with retries (`retry`); housekeeping (`housekeeping`)
keeps the gauges and the ledger; all of them step aside for webhooks (`scheduler`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping

from receiver.config.rules import Rules
from receiver.metrics import Metrics
from receiver.notify.base import Notifier
from receiver.pipeline.delivery import Delivery, Destination, min_interval
from receiver.pipeline.housekeeping import Housekeeping
from receiver.pipeline.retry import Retries
from receiver.pipeline.routing import ContextSource, NoContext, Routing
from receiver.pipeline.scheduler import Scheduler
from receiver.pipeline.tuning import Tuning
from receiver.store.base import Store

log = logging.getLogger("alert_router.pipeline")

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
    ) -> None:
        self._rules = rules
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
            clock=clock,
            tuning=current,
            queued=self._queued,
        )
        retries = Retries(store, metrics, clock=clock, tuning=current, rng=rng or random.Random())
        self._delivery = Delivery(
            store, metrics, retries, self._scheduler, clock=clock, tuning=current
        )
        self._housekeeping = Housekeeping(store, rules, metrics, clock=clock, tuning=current)
        self._destinations: dict[str, Destination] = {}
        self._tasks: list[asyncio.Task[None]] = []
        # Notifiers being closed (replaced or removed by a rules reload); `stop` waits.
        self._closing: set[asyncio.Task[None]] = set()
        self._running = False

    async def start(self) -> None:
        self._running = True
        self.apply_rules(self._rules())
        self._tasks.append(asyncio.create_task(self._routing.run(), name="route"))
        self._tasks.append(asyncio.create_task(self._housekeeping.run(), name="housekeeping"))

    async def stop(self) -> None:
        """Stop every loop, then close every notifier (at most `close_timeout`)."""
        self._running = False
        tasks = self._tasks + [d.task for d in self._destinations.values() if d.task]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for dest in self._destinations.values():
            self._close_later(dest.notifier)
        await self._finish_closing()

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

    async def _finish_closing(self) -> None:
        """Wait for the notifiers being closed, at most `close_timeout`; cancel the rest."""
        if not self._closing:
            return
        timeout = self.tuning.close_timeout
        _, late = await asyncio.wait(set(self._closing), timeout=timeout)
        if not late:
            return
        for task in late:
            task.cancel()
        await asyncio.wait(late)
        log.warning(
            "closing notifiers took too long; cancelled",
            extra={"count": len(late), "timeout_s": timeout},
        )
