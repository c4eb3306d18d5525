"""The routing loop: claim from the inbox, add cost context, route, plan per destination.

For each accepted alert the store decides per destination (first notice, repeat,
resolve, duplicate: `receiver.dedup`) what to queue; delivery sends what was queued.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

from receiver.config.rules import Rules
from receiver.dedup import SENDING
from receiver.history.capture import routed
from receiver.history.recorder import HistoryRecorder
from receiver.metrics import Metrics
from receiver.models import Alert, CostContext
from receiver.pipeline.claims import Held
from receiver.pipeline.scheduler import Scheduler, pause, wait_for_wake
from receiver.pipeline.tuning import Tuning
from receiver.routing.routes import Choice, choose
from receiver.store.base import Decision, InboxItem, Planned, Store, StoreError

log = logging.getLogger("alert_router.pipeline")

# Pause of the loop after the store or the routing itself failed, before it tries again.
_PAUSE_AFTER_ERROR = 1.0


class ContextSource(Protocol):
    async def enrich(self, rules: Rules, alerts: Sequence[Alert]) -> list[CostContext]: ...

    async def aclose(self) -> None: ...


class NoContext:
    """Cost context left out (no Prometheus configured)."""

    async def enrich(self, rules: Rules, alerts: Sequence[Alert]) -> list[CostContext]:
        return [CostContext() for _ in alerts]

    async def aclose(self) -> None:
        return None


class Routing:
    """Moves alerts from the inbox to the destinations' queues."""

    def __init__(
        self,
        store: Store,
        rules: Callable[[], Rules],
        context: ContextSource,
        metrics: Metrics,
        scheduler: Scheduler,
        held: Held,
        *,
        clock: Callable[[], float],
        tuning: Callable[[], Tuning],
        queued: Callable[[str], None],
        stopping: asyncio.Event,
        history: HistoryRecorder | None = None,
    ) -> None:
        """`queued(destination)` is called when the destination has new notifications;
        the loop ends once `stopping` is set; `history` gets each alert's context, route
        and dedup decisions."""
        self._history = history
        self._store = store
        self._rules = rules
        self._context = context
        self._metrics = metrics
        self._scheduler = scheduler
        self._clock = clock
        self._tuning = tuning
        self._queued = queued
        self._held = held
        self._stopping = stopping
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """New alerts are in the inbox."""
        self._wake.set()

    async def run(self) -> None:
        """The routing loop, until `stopping` is set (or cancelled)."""
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                # While webhooks arrive, routing takes small batches, so that no answer
                # waits long behind one, and steps aside while they queue up; once they
                # stop, it takes big batches, no pauses.
                t = self._tuning()
                started = self._scheduler.now()
                batch = t.storm_batch if self._scheduler.storm else t.route_batch
                taken = await self.route_once(batch)
                if not taken:
                    await wait_for_wake(self._wake, t.poll_interval)
                else:
                    await self._scheduler.yield_to_webhooks(started)
                if taken < batch and self._scheduler.storm:
                    # The inbox is empty and webhooks keep coming: let a few gather.
                    await pause(self._stopping, t.route_linger)
            except asyncio.CancelledError:
                raise
            except StoreError as exc:
                log.error("routing paused: store unavailable", extra={"error": str(exc)})
                await pause(self._stopping, _PAUSE_AFTER_ERROR)
            except Exception:
                log.exception("routing failed; the alerts stay queued and are tried again")
                await pause(self._stopping, _PAUSE_AFTER_ERROR)

    async def route_once(self, limit: int | None = None) -> int:
        """Route one batch (up to `limit`, default `route_batch`) from the inbox; returns
        how many alerts it took."""
        t = self._tuning()
        owner = self._held.owner
        items = await self._store.claim_inbox(limit or t.route_batch, self._clock(), t.lease, owner)
        if not items:
            return 0
        self._held.took_inbox(items)
        ids = [item.id for item in items]
        try:
            decisions = await self._route(items)
        except Exception:
            # Not renewed any more: the alerts come back when their lease runs out. (A
            # cancel keeps them held, so that a stop releases them.)
            self._held.settled(inbox=ids)
            raise
        self._held.settled(inbox=ids)
        for name in self._record(decisions):
            self._queued(name)
        return len(items)

    async def _route(self, items: Sequence[InboxItem]) -> list[Decision]:
        """Cost context, routes and the store's dedup decisions for claimed `items`."""
        t = self._tuning()
        rules = self._rules()
        alerts = [item.alert for item in items]
        contexts: list[CostContext] = []
        chunk = max(1, t.enrich_chunk)
        for start in range(0, len(alerts), chunk):
            if start:
                await asyncio.sleep(0)  # let waiting webhooks be answered in between
            contexts += await self._context.enrich(rules, alerts[start : start + chunk])
        choices = [choose(rules, a, c.numbers()) for a, c in zip(alerts, contexts, strict=True)]
        planned = plan(items, contexts, choices)
        decisions = await self._store.plan([item.id for item in items], planned, self._clock())
        if self._history is not None:
            # Made at the recorder's next flush, from what this batch already holds.
            self._history.record_later(
                partial(
                    routed,
                    rules,
                    alerts,
                    contexts,
                    choices,
                    decisions,
                    stored_at=[item.received_at for item in items],
                    at=self._clock(),
                    sending=SENDING,
                )
            )
        return decisions

    def _record(self, decisions: Sequence[Decision]) -> list[str]:
        """Count and log the store's decisions; the destinations that got something to
        send. One log line per destination and batch, naming every decision: a line per
        decision cost as much as the routing itself in a storm."""
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
        sending: list[str] = []
        for name, entries in by_destination.items():
            send = sum(1 for entry in entries if entry["send"])
            log.info(
                "dedup decisions",
                extra={
                    "destination": name,
                    "count": len(entries),
                    "send": send,
                    "decisions": entries,
                },
            )
            if send:
                sending.append(name)
        return sending


def plan(
    items: Sequence[InboxItem], contexts: Sequence[CostContext], choices: Sequence[Choice]
) -> list[Planned]:
    """One entry per alert and destination its routing `choices` name (`choose`)."""
    planned: list[Planned] = []
    for item, context, choice in zip(items, contexts, choices, strict=True):
        if not choice.targets:
            log.warning(
                "no route matched and no default destination; alert dropped",
                extra={"alertname": item.alert.name, "fingerprint": item.alert.fingerprint},
            )
        for target in choice.targets:
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
