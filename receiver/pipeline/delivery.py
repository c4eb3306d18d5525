"""Per-destination delivery: claim from the outbox, send, record what was delivered.

One loop per destination sends what is queued for it, at its own rate, so a failing
Slack never delays PagerDuty. A rate-limited destination sends one message per send slot,
a digest when a backlog waits; one without a limit whose notifier takes one notification
per request (PagerDuty) sends several at once, and one without a limit that takes digests
(Slack) sends what waits one message each, from one claim, or a digest past a backlog.
What was accepted is recorded by `receiver.pipeline.delivered` (the ledger, only after a
send succeeded); what failed goes to `receiver.pipeline.retry`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from receiver.config.schema import DestinationSpec
from receiver.history.recorder import HistoryRecorder
from receiver.metrics import Metrics
from receiver.models import Notification
from receiver.notify.base import Notifier, NotifyError, Ref
from receiver.pipeline.claims import Held
from receiver.pipeline.delivered import Recording
from receiver.pipeline.retry import Retries, SendFailure, send_failure
from receiver.pipeline.scheduler import Scheduler, pause, wait_for_wake
from receiver.pipeline.tuning import Tuning
from receiver.store.base import Claims, OutboxItem, Store, StoreError

log = logging.getLogger("alert_router.pipeline")

# Slots are spaced a little wider than the vendor's rate, so that scheduling jitter
# between two sends never makes them arrive closer than the limit allows.
RATE_MARGIN = 1.05
# Pause of a loop after the store or the loop itself failed, before it tries again.
_PAUSE_AFTER_ERROR = 1.0


def min_interval(spec: DestinationSpec) -> float:
    """Seconds between two sends to a destination (0: no limit)."""
    if spec.slack is not None:
        rate = spec.slack.max_per_second
        return RATE_MARGIN / rate if rate > 0 else 0.0
    assert spec.pagerduty is not None
    per_minute = spec.pagerduty.max_per_minute
    return RATE_MARGIN * 60.0 / per_minute if per_minute > 0 else 0.0


class Destination:
    """The delivery state of one destination: its notifier, rate, wake-up and loop."""

    def __init__(self, name: str, notifier: Notifier, interval: float) -> None:
        self.name = name
        self.notifier = notifier
        self.interval = interval
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class Delivery:
    """Sends each destination's queued notifications and records the outcome."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        retries: Retries,
        scheduler: Scheduler,
        held: Held,
        *,
        clock: Callable[[], float],
        tuning: Callable[[], Tuning],
        stopping: asyncio.Event,
        history: HistoryRecorder | None = None,
    ) -> None:
        self._held = held
        self._stopping = stopping
        self._store = store
        self._metrics = metrics
        self._retries = retries
        self._scheduler = scheduler
        self._clock = clock
        self._tuning = tuning
        self._record = Recording(store, metrics, clock=clock, tuning=tuning, history=history)

    async def run(self, dest: Destination) -> None:
        """The delivery loop of `dest`, until `stopping` is set (or cancelled)."""
        while not self._stopping.is_set():
            dest.wake.clear()
            try:
                started = self._scheduler.now()
                if not await self.deliver_once(dest):
                    await wait_for_wake(dest.wake, self._tuning().poll_interval)
                elif dest.interval == 0:
                    # A rate-limited destination's pace is its limit; an unlimited one
                    # would take the CPU from webhooks while they queue up.
                    await self._scheduler.yield_to_webhooks(started)
            except asyncio.CancelledError:
                raise
            except StoreError as exc:
                log.error(
                    "delivery paused: store unavailable",
                    extra={"destination": dest.name, "error": str(exc)},
                )
                await pause(self._stopping, _PAUSE_AFTER_ERROR)
            except Exception:
                log.exception("delivery loop failed", extra={"destination": dest.name})
                await pause(self._stopping, _PAUSE_AFTER_ERROR)

    async def deliver_once(self, dest: Destination) -> int:
        """Send what is next for `dest` (one message, or one round of single messages
        without a rate limit); returns how many notifications it took."""
        t = self._tuning()
        if dest.interval == 0:
            if dest.notifier.max_batch == 1:
                return await self._deliver_parallel(dest)
            return await self._deliver_unlimited(dest)
        name = dest.name
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
        items = await self._store.claim_outbox(name, max(1, limit), now, t.lease, self._owner)
        if not items:
            return 0
        self._held.took_outbox(items)
        try:
            return await self._send(dest, items, at)
        except Exception:
            # Not renewed any more: they come back when their lease runs out. (A cancel
            # keeps them held, so that a stop releases those not being sent.)
            self._held.settled(outbox=[item.id for item in items])
            raise

    @property
    def _owner(self) -> str:
        return self._held.owner

    async def _send(self, dest: Destination, items: Sequence[OutboxItem], at: float) -> int:
        """Send claimed `items` as one message at `at`, and record the outcome."""
        name, notifier = dest.name, dest.notifier
        wait = at - self._clock()
        if wait > 0:
            await asyncio.sleep(wait)
        batch = [_notification(item) for item in items]
        self._held.sending(items)
        try:
            refs = await notifier.notify(batch)
        except NotifyError as exc:
            failure = send_failure(items, exc)
        except Exception as exc:
            log.exception("notifier raised unexpectedly", extra={"destination": name})
            failure = send_failure(items, exc)
        else:
            await self._record.delivered(dest.name, dest.notifier, items, refs)
            self._held.settled(outbox=[item.id for item in items])
            await self._space(dest)
            if len(items) > 1:
                self._metrics.digests.labels(name).inc()
            return len(items)
        await self._space(dest)
        await self._retries.failed(name, failure)
        self._held.settled(outbox=[item.id for item in items])
        return len(items)

    async def _deliver_unlimited(self, dest: Destination) -> int:
        """Without a rate limit, a notifier that takes digests (Slack): what waits goes out
        one message per notification, in queue order, claimed and recorded together (a
        store round trip per message cost more than the message); a backlog of more than
        `digest_after` goes out as a digest."""
        t = self._tuning()
        name = dest.name
        now = self._clock()
        # No slot to reserve (interval 0), but a vendor's Retry-After still holds.
        at = await self._store.reserve_send(name, 0.0, now)
        if at > now:
            await asyncio.sleep(at - now)
            now = self._clock()
        owner, most = self._owner, max(1, dest.notifier.max_batch)
        first = min(t.digest_after + 1, most)
        items = await self._store.claim_outbox(name, first, now, t.lease, owner)
        if not items:
            return 0
        self._held.took_outbox(items)
        try:
            if len(items) > t.digest_after:
                if most > len(items):
                    more = await self._store.claim_outbox(
                        name, most - len(items), now, t.lease, owner
                    )
                    self._held.took_outbox(more)
                    items = [*items, *more]
                return await self._send(dest, items, now)
            return await self._send_singles(dest, items)
        except Exception:
            self._held.settled(outbox=[item.id for item in items])
            raise

    async def _send_singles(self, dest: Destination, items: Sequence[OutboxItem]) -> int:
        """Send claimed `items` one message each, in order, and record the outcome. One
        notification per episode: a later one of an episode (a resolve behind its firing)
        is released, to be claimed once the first is recorded, with its message ref. After
        a failure worth retrying the rest is released too, so that the vendor's Retry-After
        or the next step decides when it goes."""
        name, notifier = dest.name, dest.notifier
        episodes: set[str] = set()
        done: list[tuple[OutboxItem, Ref | None]] = []
        failures: list[SendFailure] = []
        rest: Sequence[OutboxItem] = ()
        for index, item in enumerate(items):
            if self._stopping.is_set():
                break  # the rest stays held, for the stop to release
            if item.alert.episode in episodes:
                rest = items[index:]
                break
            episodes.add(item.alert.episode)
            self._held.sending([item])
            try:
                refs = await notifier.notify([_notification(item)])
            except NotifyError as exc:
                failures.append(send_failure([item], exc))
                if exc.recoverable:
                    rest = items[index + 1 :]
                    break
                continue
            except Exception as exc:
                log.exception("notifier raised unexpectedly", extra={"destination": name})
                failures.append(send_failure([item], exc))
                rest = items[index + 1 :]
                break
            done.append((item, refs[0] if refs else None))
        if done:
            await self._record.delivered(
                dest.name, dest.notifier, [item for item, _ in done], [ref for _, ref in done]
            )
            self._held.settled(outbox=[item.id for item, _ in done])
        for failure in failures:
            await self._retries.failed(name, failure)
            self._held.settled(outbox=[item.id for item in failure.items])
        await self._release(rest)
        return len(items)

    async def _release(self, items: Sequence[OutboxItem]) -> None:
        """Give claimed, unsent `items` back to the queue at once."""
        if not items:
            return
        ids = tuple(item.id for item in items)
        try:
            await self._store.release(self._owner, Claims((), ids))
        except StoreError as exc:
            # Not renewed any more: they come back when their lease runs out.
            log.warning(
                "releasing unsent notifications failed; they wait for their lease",
                extra={"destination": items[0].destination, "error": str(exc)},
            )
        self._held.settled(outbox=ids)

    async def _space(self, dest: Destination) -> None:
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

    async def _deliver_parallel(self, dest: Destination) -> int:
        """Without a rate limit, one notification per request (PagerDuty): up to
        `parallel_sends` requests at once. The notifications of one episode go one after
        the other, in queue order, so a resolve never overtakes its firing."""
        t = self._tuning()
        now = self._clock()
        # No slot to reserve (interval 0), but a vendor's Retry-After still holds.
        at = await self._store.reserve_send(dest.name, 0.0, now)
        if at > now:
            await asyncio.sleep(at - now)
            now = self._clock()
        items = await self._store.claim_outbox(
            dest.name, t.parallel_sends, now, t.lease, self._owner
        )
        if not items:
            return 0
        self._held.took_outbox(items)
        try:
            return await self._send_parallel(dest, items)
        except Exception:
            self._held.settled(outbox=[item.id for item in items])
            raise

    async def _send_parallel(self, dest: Destination, items: Sequence[OutboxItem]) -> int:
        chains: dict[str, list[OutboxItem]] = {}
        for item in items:
            chains.setdefault(item.alert.episode, []).append(item)
        outcomes = await asyncio.gather(
            *(self._send_chain(dest, chain) for chain in chains.values())
        )
        sent = [pair for done, _ in outcomes for pair in done]
        if sent:
            await self._record.delivered(
                dest.name, dest.notifier, [item for item, _ in sent], [ref for _, ref in sent]
            )
            self._held.settled(outbox=[item.id for item, _ in sent])
        for _, failures in outcomes:
            for failure in failures:
                await self._retries.failed(dest.name, failure)
                self._held.settled(outbox=[item.id for item in failure.items])
        # What a stop kept from being sent stays held, for the stop to release.
        return len(items)

    async def _send_chain(
        self, dest: Destination, chain: Sequence[OutboxItem]
    ) -> tuple[list[tuple[OutboxItem, Ref | None]], list[SendFailure]]:
        """Send one episode's notifications in order. After a failure worth retrying, the
        rest of the chain waits with it (tried again together, still in order)."""
        done: list[tuple[OutboxItem, Ref | None]] = []
        failures: list[SendFailure] = []
        for index, item in enumerate(chain):
            if self._stopping.is_set():
                break  # the rest is released for another replica
            self._held.sending([item])
            try:
                refs = await dest.notifier.notify([_notification(item)])
            except NotifyError as exc:
                if exc.recoverable:
                    failures.append(send_failure(chain[index:], exc))
                    break
                failures.append(send_failure([item], exc))
                continue
            except Exception as exc:
                log.exception("notifier raised unexpectedly", extra={"destination": dest.name})
                failures.append(send_failure(chain[index:], exc))
                break
            done.append((item, refs[0] if refs else None))
        return done, failures


def _notification(item: OutboxItem) -> Notification:
    return Notification(
        alert=item.alert,
        destination=item.destination,
        route=item.route,
        reason=item.reason,
        context=item.context,
        ref=item.ref,
    )
