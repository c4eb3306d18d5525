"""The pipeline behind ingest: enrich -> route -> dedup -> deliver -> record.

Two kinds of loop drain the store. The routing loop takes accepted alerts from the
inbox, adds cost context, routes them, and lets the store decide per destination
(first notice, repeat, resolve, duplicate) what to queue. One delivery loop per
destination sends what is queued for it, at its own rate, with its own retries, so a
failing Slack never delays PagerDuty. The ledger is written only after a delivery
succeeded (Alertmanager's SetNotifiesStage).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from receiver.dedup import SENDING
from receiver.metrics import Metrics
from receiver.models import Alert, CostContext, Notification
from receiver.notify.base import Notifier, NotifyError
from receiver.routing import route_alert
from receiver.rules import DestinationSpec, Rules
from receiver.store import InboxItem, OutboxItem, Planned, Store, StoreError

log = logging.getLogger("alert_router.pipeline")


class ContextSource(Protocol):
    async def enrich(self, rules: Rules, alerts: Sequence[Alert]) -> list[CostContext]: ...

    async def aclose(self) -> None: ...


class NoContext:
    """Cost context left out (no Prometheus configured)."""

    async def enrich(self, rules: Rules, alerts: Sequence[Alert]) -> list[CostContext]:
        return [CostContext() for _ in alerts]

    async def aclose(self) -> None:
        return None


@dataclass(frozen=True)
class Tuning:
    route_batch: int = 500
    lease: float = 120.0
    poll_interval: float = 0.5
    # A Slack destination with more than this many notifications waiting gets a digest.
    digest_after: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    housekeeping_interval: float = 5.0
    dedup_window: float = 60.0
    ledger_retention: float = 5 * 86400.0


def backoff_delay(attempts: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter in [delay/2, delay]."""
    delay = min(cap, base * 2.0 ** min(attempts, 20))
    return delay / 2 + rng.random() * delay / 2


# Slots are spaced a little wider than the vendor's rate, so that scheduling jitter
# between two sends never makes them arrive closer than the limit allows.
RATE_MARGIN = 1.05


def min_interval(spec: DestinationSpec) -> float:
    """Seconds between two sends to a destination (0: no limit)."""
    if spec.slack is not None:
        rate = spec.slack.max_per_second
        return RATE_MARGIN / rate if rate > 0 else 0.0
    assert spec.pagerduty is not None
    per_minute = spec.pagerduty.max_per_minute
    return RATE_MARGIN * 60.0 / per_minute if per_minute > 0 else 0.0


class _Destination:
    """The delivery state of one destination: its notifier, rate and pause."""

    def __init__(self, name: str, notifier: Notifier, interval: float) -> None:
        self.name = name
        self.notifier = notifier
        self.interval = interval
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


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
    ) -> None:
        self._store = store
        self._rules = rules
        self._notifier_factory = notifiers
        self._metrics = metrics
        self._context = context or NoContext()
        self._clock = clock
        self.tuning = tuning or Tuning()
        self._rng = rng or random.Random()
        self._inbox_wake = asyncio.Event()
        self._destinations: dict[str, _Destination] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self._running = True
        self.apply_rules(self._rules())
        self._tasks.append(asyncio.create_task(self._route_loop(), name="route"))
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))

    async def stop(self) -> None:
        self._running = False
        tasks = self._tasks + [d.task for d in self._destinations.values() if d.task]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for dest in self._destinations.values():
            dest.notifier.close()

    def apply_rules(self, rules: Rules) -> None:
        """Build notifiers for the destinations of `rules`; start loops for new ones."""
        notifiers = self._notifier_factory(rules)
        self._metrics.init_destinations(notifiers)
        for name, notifier in notifiers.items():
            interval = min_interval(rules.destinations[name])
            dest = self._destinations.get(name)
            if dest is None:
                dest = _Destination(name, notifier, interval)
                self._destinations[name] = dest
            else:
                if dest.notifier is not notifier:
                    dest.notifier.close()
                dest.notifier, dest.interval = notifier, interval
            if self._running and (dest.task is None or dest.task.done()):
                dest.task = asyncio.create_task(self._deliver_loop(dest), name=f"deliver:{name}")
        for name in set(self._destinations) - set(notifiers):
            dest = self._destinations.pop(name)
            if dest.task is not None:
                dest.task.cancel()
            dest.notifier.close()
            log.warning(
                "destination removed from the rules; its queued notifications wait for it",
                extra={"destination": name},
            )

    def wake(self) -> None:
        """New alerts are in the inbox."""
        self._inbox_wake.set()

    # -- routing ---------------------------------------------------------------------

    async def _route_loop(self) -> None:
        while True:
            self._inbox_wake.clear()
            try:
                if not await self.route_once():
                    await _wait(self._inbox_wake, self.tuning.poll_interval)
            except asyncio.CancelledError:
                raise
            except StoreError as exc:
                log.error("routing paused: store unavailable", extra={"error": str(exc)})
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("routing failed; the alerts stay queued and are tried again")
                await asyncio.sleep(1.0)

    async def route_once(self) -> int:
        """Route one batch from the inbox; returns how many alerts it took."""
        t = self.tuning
        items = await self._store.claim_inbox(t.route_batch, self._clock(), t.lease)
        if not items:
            return 0
        rules = self._rules()
        contexts = await self._context.enrich(rules, [item.alert for item in items])
        planned = self._plan(rules, items, contexts)
        decisions = await self._store.plan([item.id for item in items], planned, self._clock())
        woken: set[str] = set()
        for decision in decisions:
            self._metrics.dedup.labels(decision.destination, decision.reason.value).inc()
            log.info(
                "dedup decision",
                extra={
                    "destination": decision.destination,
                    "episode": decision.episode,
                    "status": decision.status,
                    "reason": decision.reason.value,
                    "send": decision.reason in SENDING,
                },
            )
            if decision.reason in SENDING:
                woken.add(decision.destination)
        for name in woken:
            dest = self._destinations.get(name)
            if dest is not None:
                dest.wake.set()
        return len(items)

    def _plan(
        self, rules: Rules, items: Sequence[InboxItem], contexts: Sequence[CostContext]
    ) -> list[Planned]:
        planned: list[Planned] = []
        for item, context in zip(items, contexts, strict=True):
            targets = route_alert(rules, item.alert.labels, context.numbers())
            if not targets:
                log.warning(
                    "no route matched and no default destination; alert dropped",
                    extra={"alertname": item.alert.name, "fingerprint": item.alert.fingerprint},
                )
            for target in targets:
                planned.append(
                    Planned(
                        destination=target.destination,
                        route=target.route.name,
                        repeat_interval=target.route.repeat_interval,
                        send_resolved=target.route.send_resolved,
                        alert=item.alert,
                        context=context,
                        received_at=item.received_at,
                    )
                )
        return planned

    # -- delivery --------------------------------------------------------------------

    async def _deliver_loop(self, dest: _Destination) -> None:
        while True:
            dest.wake.clear()
            try:
                if not await self.deliver_once(dest.name):
                    await _wait(dest.wake, self.tuning.poll_interval)
            except asyncio.CancelledError:
                raise
            except StoreError as exc:
                log.error(
                    "delivery paused: store unavailable",
                    extra={"destination": dest.name, "error": str(exc)},
                )
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("delivery loop failed", extra={"destination": dest.name})
                await asyncio.sleep(1.0)

    async def deliver_once(self, name: str) -> int:
        """Send the next message for destination `name`; returns how many it carried."""
        dest = self._destinations[name]
        t = self.tuning
        now = self._clock()
        if await self._store.ready_count(name, now) == 0:
            return 0
        # The send slot is shared by every replica (Slack: 1 message/s per destination;
        # PagerDuty: ~120 events/min per routing key) and honours a vendor's Retry-After.
        at = await self._store.reserve_send(name, dest.interval, now)
        if at > now:
            await asyncio.sleep(at - now)
            now = self._clock()
        ready = await self._store.ready_count(name, now)
        if ready == 0:
            return 0
        notifier = dest.notifier
        limit = notifier.max_batch if ready > t.digest_after else 1
        items = await self._store.claim_outbox(name, max(1, limit), now, t.lease)
        if not items:
            return 0
        batch = [_notification(item) for item in items]
        try:
            refs = await notifier.notify(batch)
        except NotifyError as exc:
            await self._failed(dest, items, str(exc), exc.recoverable, exc.retry_after)
            return len(items)
        except Exception as exc:
            # A notifier bug must not lose alerts: keep them and try again later.
            log.exception("notifier raised unexpectedly", extra={"destination": name})
            await self._failed(dest, items, type(exc).__name__, True, None)
            return len(items)
        done = self._clock()
        await self._store.delivered(items, refs, done)
        self._metrics.notifications.labels(name, "delivered").inc(len(items))
        if len(items) > 1:
            self._metrics.digests.labels(name).inc()
        for item in items:
            self._metrics.delivery_latency.labels(name).observe(max(0.0, done - item.received_at))
            log.info(
                "delivered",
                extra={
                    "destination": name,
                    "alertname": item.alert.name,
                    "episode": item.alert.episode,
                    "status": item.alert.status,
                    "reason": item.reason.value,
                    "batch": len(items),
                },
            )
        return len(items)

    async def _failed(
        self,
        dest: _Destination,
        items: Sequence[OutboxItem],
        error: str,
        recoverable: bool,
        retry_after: float | None,
    ) -> None:
        now = self._clock()
        if not recoverable:
            await self._store.dead_letter(items, error, now)
            self._metrics.notifications.labels(dest.name, "dead_letter").inc(len(items))
            log.error(
                "permanent delivery failure; kept as dead letter",
                extra={"destination": dest.name, "error": error, "count": len(items)},
            )
            return
        attempts = max(item.attempts for item in items)
        delay = backoff_delay(
            attempts, self.tuning.backoff_base, self.tuning.backoff_max, self._rng
        )
        if retry_after is not None:
            # The vendor said when: no request to this destination before then.
            delay = max(retry_after, 0.0)
            await self._store.pause_destination(dest.name, now + delay)
        await self._store.reschedule(items, now + delay, error)
        self._metrics.notifications.labels(dest.name, "retried").inc(len(items))
        self._metrics.retries.labels(dest.name).inc(len(items))
        log.warning(
            "delivery failed; will retry",
            extra={
                "destination": dest.name,
                "error": error,
                "retry_in": round(delay, 3),
                "count": len(items),
            },
        )

    # -- housekeeping ----------------------------------------------------------------

    async def _housekeeping(self) -> None:
        while True:
            try:
                await self.refresh_gauges()
                t = self.tuning
                await self._store.purge(self._clock(), t.dedup_window, t.ledger_retention)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("housekeeping failed", extra={"error": str(exc)})
            await asyncio.sleep(self.tuning.housekeeping_interval)

    async def refresh_gauges(self) -> dict[str, int]:
        depths = await self._store.depths()
        self._metrics.queue_depth.labels("inbox").set(depths["inbox"])
        self._metrics.queue_depth.labels("outbox").set(depths["outbox"])
        self._metrics.dead_letters.set(depths["dead_letters"])
        return depths


def _notification(item: OutboxItem) -> Notification:
    return Notification(
        alert=item.alert,
        destination=item.destination,
        route=item.route,
        reason=item.reason,
        context=item.context,
        ref=item.ref,
    )


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Until `event` is set or `seconds` pass. Loops clear the event before their work,
    so a wake-up that arrives during the work is not lost."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
