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

from receiver.config.rules import DestinationSpec, Rules
from receiver.dedup import SENDING
from receiver.metrics import Metrics
from receiver.models import Alert, CostContext, Notification
from receiver.notify.base import Notifier, NotifyError, Ref
from receiver.routing.routes import resolve_targets, route_alert
from receiver.store.base import InboxItem, OutboxItem, Planned, Store, StoreError

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
    # A destination without a rate limit whose notifier sends one notification at a time
    # (PagerDuty) gets this many sends in flight at once.
    parallel_sends: int = 8
    # While webhooks arrive, routing takes batches of `storm_batch` and adds cost context
    # `enrich_chunk` alerts at a time; when `queued_webhooks` or more wait for an answer,
    # routing and each delivery loop keep only about `pipeline_share` of the time (see
    # Pipeline._yield_to_webhooks).
    storm_batch: int = 32
    enrich_chunk: int = 8
    queued_webhooks: int = 4
    pipeline_share: float = 0.1
    # Notifications for a destination the rules no longer name wait this long (the rules
    # may come back, or differ between replicas during a rollout), then become dead
    # letters, which `alert-router dead-letters retry` queues again.
    orphan_grace: float = 600.0


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
# Notifications that failed together: error text, recoverable, the vendor's Retry-After.
_Failure = tuple[Sequence[OutboxItem], str, bool, float | None]


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
        self._store = store
        self._rules = rules
        self._notifier_factory = notifiers
        self._metrics = metrics
        self._context = context or NoContext()
        self._clock = clock
        self.tuning = tuning or Tuning()
        self._rng = rng or random.Random()
        self._inbox_wake = asyncio.Event()
        self._in_flight = webhooks_in_flight
        self._last_webhook = -1e9
        self._destinations: dict[str, _Destination] = {}
        # Destinations with queued notifications that the rules no longer name: since when.
        self._orphaned: dict[str, float] = {}
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
                "destination removed from the rules; its queued notifications wait for it,"
                " then become dead letters",
                extra={"destination": name, "grace_s": self.tuning.orphan_grace},
            )

    def wake(self) -> None:
        """New alerts are in the inbox."""
        self._last_webhook = time.monotonic()
        self._inbox_wake.set()

    # -- routing ---------------------------------------------------------------------

    async def _route_loop(self) -> None:
        while True:
            self._inbox_wake.clear()
            try:
                # Answering Alertmanager comes first: it waits for the answer and re-sends
                # what is slow, and what is accepted is durable. While webhooks arrive,
                # routing takes small batches, so that no answer waits long behind one;
                # when they queue up (the CPU is saturated), routing steps aside after
                # each batch, keeping about `pipeline_share` of the time, so a long storm
                # still drains. Once webhooks stop, routing takes big batches, no pauses.
                t = self.tuning
                storm = time.monotonic() - self._last_webhook < 1.0
                started = time.perf_counter()
                if not await self.route_once(t.storm_batch if storm else t.route_batch):
                    await _wait(self._inbox_wake, t.poll_interval)
                else:
                    await self._yield_to_webhooks(started)
            except asyncio.CancelledError:
                raise
            except StoreError as exc:
                log.error("routing paused: store unavailable", extra={"error": str(exc)})
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("routing failed; the alerts stay queued and are tried again")
                await asyncio.sleep(1.0)

    async def _yield_to_webhooks(self, started: float) -> None:
        """After a pipeline step that began at `started` (perf_counter): while webhooks
        queue up (the CPU is saturated), pause so that the step's loop keeps only about
        `pipeline_share` of the time; stop pausing as soon as the queue is short again.
        Answers come first, and a long storm still drains."""
        t = self.tuning
        if self._in_flight() < t.queued_webhooks:
            return
        share = min(max(t.pipeline_share, 0.01), 1.0)
        until = time.perf_counter() + min((time.perf_counter() - started) * (1 / share - 1), 1.0)
        while self._in_flight() >= t.queued_webhooks:
            left = until - time.perf_counter()
            if left <= 0:
                break
            await asyncio.sleep(min(left, 0.005))

    async def route_once(self, limit: int | None = None) -> int:
        """Route one batch (up to `limit`, default `route_batch`) from the inbox; returns
        how many alerts it took."""
        t = self.tuning
        items = await self._store.claim_inbox(limit or t.route_batch, self._clock(), t.lease)
        if not items:
            return 0
        rules = self._rules()
        alerts = [item.alert for item in items]
        contexts: list[CostContext] = []
        chunk = max(1, t.enrich_chunk)
        for start in range(0, len(alerts), chunk):
            if start:
                await asyncio.sleep(0)  # let waiting webhooks be answered in between
            contexts += await self._context.enrich(rules, alerts[start : start + chunk])
        planned = self._plan(rules, items, contexts)
        decisions = await self._store.plan([item.id for item in items], planned, self._clock())
        # One log line per destination and batch, naming every decision: a line per
        # decision cost as much as the routing itself in a storm.
        by_destination: dict[str, list[dict[str, object]]] = {}
        counts: dict[tuple[str, str], int] = {}
        for decision in decisions:
            reason = decision.reason.value
            key = (decision.destination, reason)
            counts[key] = counts.get(key, 0) + 1
            by_destination.setdefault(decision.destination, []).append(
                {
                    "episode": decision.episode,
                    "status": decision.status,
                    "reason": reason,
                    "send": decision.reason in SENDING,
                }
            )
        for (name, reason), count in counts.items():
            self._metrics.dedup.labels(name, reason).inc(count)
        for name, entries in by_destination.items():
            sending = sum(1 for entry in entries if entry["send"])
            log.info(
                "dedup decisions",
                extra={
                    "destination": name,
                    "count": len(entries),
                    "send": sending,
                    "decisions": entries,
                },
            )
            dest = self._destinations.get(name)
            if sending and dest is not None:
                dest.wake.set()
        return len(items)

    def _plan(
        self, rules: Rules, items: Sequence[InboxItem], contexts: Sequence[CostContext]
    ) -> list[Planned]:
        planned: list[Planned] = []
        for item, context in zip(items, contexts, strict=True):
            if item.alert.firing:
                targets = route_alert(rules, item.alert.labels, context.numbers())
            else:
                targets = resolve_targets(rules, item.alert.labels)
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
                started = time.perf_counter()
                if not await self.deliver_once(dest.name):
                    await _wait(dest.wake, self.tuning.poll_interval)
                elif dest.interval == 0:
                    # A rate-limited destination's pace is its limit; an unlimited one
                    # would take the CPU from webhooks while they queue up.
                    await self._yield_to_webhooks(started)
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
        if dest.interval == 0 and dest.notifier.max_batch == 1:
            return await self._deliver_parallel(dest)
        now = self._clock()
        ready = await self._store.ready_count(name, now, at_most=t.digest_after + 1)
        if ready == 0:
            return 0
        # The send slot is shared by every replica (Slack: 1 message/s per destination;
        # PagerDuty: ~120 events/min per routing key) and honours a vendor's Retry-After.
        at = await self._store.reserve_send(name, dest.interval, now)
        # The message is claimed before its slot and leaves right at it: the time the
        # store takes to answer varies with the work queued in front, and would make two
        # messages arrive closer than the vendor's limit. A long pause (Retry-After) is
        # waited out first, so that claimed work is never held near its lease's end.
        if at - now > t.lease / 4:
            await asyncio.sleep(at - now)
            now = self._clock()
            ready = await self._store.ready_count(name, now, at_most=t.digest_after + 1)
            if ready == 0:
                return 0
        notifier = dest.notifier
        limit = notifier.max_batch if ready > t.digest_after else 1
        items = await self._store.claim_outbox(name, max(1, limit), now, t.lease)
        if not items:
            return 0
        wait = at - self._clock()
        if wait > 0:
            await asyncio.sleep(wait)
        batch = [_notification(item) for item in items]
        try:
            refs = await notifier.notify(batch)
        except NotifyError as exc:
            await self._space(dest)
            await self._failed(dest, items, str(exc), exc.recoverable, exc.retry_after)
            return len(items)
        except Exception as exc:
            # A notifier bug must not lose alerts: keep them and try again later.
            log.exception("notifier raised unexpectedly", extra={"destination": name})
            await self._space(dest)
            await self._failed(dest, items, type(exc).__name__, True, None)
            return len(items)
        await self._delivered(dest, items, refs)
        await self._space(dest)
        if len(items) > 1:
            self._metrics.digests.labels(name).inc()
        return len(items)

    async def _space(self, dest: _Destination) -> None:
        """No next send to a rate-limited destination until `interval` after this one was
        answered. Slots alone space the sends' planned times; a send that left late (the
        event loop or the send threads busy) would arrive close to the next one."""
        if dest.interval <= 0:
            return
        try:
            await self._store.pause_destination(dest.name, self._clock() + dest.interval)
        except StoreError as exc:
            # Only the spacing is lost (the slot still holds); the send itself stands.
            log.warning(
                "spacing the next send failed", extra={"destination": dest.name, "error": str(exc)}
            )

    async def _deliver_parallel(self, dest: _Destination) -> int:
        """Without a rate limit, one notification per request (PagerDuty): up to
        `parallel_sends` requests at once. The notifications of one episode go one after
        the other, in queue order, so a resolve never overtakes its firing."""
        t = self.tuning
        now = self._clock()
        # No slot to reserve (interval 0), but a vendor's Retry-After still holds.
        at = await self._store.reserve_send(dest.name, 0.0, now)
        if at > now:
            await asyncio.sleep(at - now)
            now = self._clock()
        items = await self._store.claim_outbox(dest.name, t.parallel_sends, now, t.lease)
        if not items:
            return 0
        chains: dict[str, list[OutboxItem]] = {}
        for item in items:
            chains.setdefault(item.alert.episode, []).append(item)
        outcomes = await asyncio.gather(
            *(self._send_chain(dest, chain) for chain in chains.values())
        )
        sent = [pair for done, _ in outcomes for pair in done]
        if sent:
            await self._delivered(dest, [item for item, _ in sent], [ref for _, ref in sent])
        for _, failures in outcomes:
            for failure in failures:
                await self._failed(dest, *failure)
        return len(items)

    async def _send_chain(
        self, dest: _Destination, chain: Sequence[OutboxItem]
    ) -> tuple[list[tuple[OutboxItem, Ref | None]], list[_Failure]]:
        """Send one episode's notifications in order. After a failure worth retrying, the
        rest of the chain waits with it (tried again together, still in order)."""
        done: list[tuple[OutboxItem, Ref | None]] = []
        failures: list[_Failure] = []
        for index, item in enumerate(chain):
            try:
                refs = await dest.notifier.notify([_notification(item)])
            except NotifyError as exc:
                if exc.recoverable:
                    failures.append((chain[index:], str(exc), True, exc.retry_after))
                    break
                failures.append(([item], str(exc), False, None))
                continue
            except Exception as exc:
                # A notifier bug must not lose alerts: keep them and try again later.
                log.exception("notifier raised unexpectedly", extra={"destination": dest.name})
                failures.append((chain[index:], type(exc).__name__, True, None))
                break
            done.append((item, refs[0] if refs else None))
        return done, failures

    async def _record_delivered(
        self, name: str, items: Sequence[OutboxItem], refs: Sequence[Ref | None], done: float
    ) -> None:
        """Record a send that happened. The store may fail once (a Redis connection that
        went stale across a restart): recording is idempotent, so try again for up to half
        the lease, rather than letting the lease expire and the message go out twice."""
        deadline = time.monotonic() + self.tuning.lease / 2
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
                await asyncio.sleep(0.2)

    async def _delivered(
        self, dest: _Destination, items: Sequence[OutboxItem], refs: Sequence[Ref | None]
    ) -> None:
        done = self._clock()
        await self._record_delivered(dest.name, items, refs, done)
        name = dest.name
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
                await self.retire_orphans()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("housekeeping failed", extra={"error": str(exc)})
            await asyncio.sleep(self.tuning.housekeeping_interval)

    async def retire_orphans(self) -> int:
        """Dead-letter the notifications queued for destinations that the rules have not
        named for `orphan_grace` seconds (this process' view); returns how many. Those
        still waiting for a retry go once they are due, at a later call."""
        t = self.tuning
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
                items = await self._store.claim_outbox(name, t.route_batch, now, t.lease)
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
