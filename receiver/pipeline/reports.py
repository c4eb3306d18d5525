"""Scheduled reports: which slot is due, which replica sends it, and sending it once.

Every few seconds, for each report of the rules, `receiver.reports.schedule.due` says
which scheduled time (slot) should be sent now, given the latest slot the store recorded.
The replica whose `claim_report_slot` succeeds queues, in the same step, one send per
destination of the report; every other replica, and this one after a restart, sees the
slot taken. A slot missed while every replica was down is sent once, late (and says so),
while the router is back within the report's window.

A report the store has never recorded a slot for (a new report, or a fresh store) starts
with its next scheduled time: the slot before it is recorded, not sent, so a router that
starts at 15:00 does not send the morning's report late.

The queued sends go like notifications do: leased to one replica and renewed while it
works, taken over by another when that replica dies (its lease runs out), sent at the
destination's pace (the send slots and Retry-After pauses that alerts to the same
destination share), retried after backoff or the vendor's Retry-After, and kept as a dead
letter after a permanent error or ATTEMPTS tries (`alert-router dead-letters retry`
queues it again). A report whose chart failed alone is not posted again: the next try
uploads only the chart. The report is built at send time from its slot, so the replica
that takes a send over builds the same window.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from receiver.config.reports import ReportSpec
from receiver.config.rules import Rules
from receiver.notify.base import NotifyError, Ref
from receiver.notify.slack.bot import ChartNotUploaded
from receiver.pipeline.delivery import min_interval
from receiver.pipeline.retry import backoff_delay
from receiver.pipeline.scheduler import pause
from receiver.pipeline.tuning import Tuning
from receiver.reports.model import Report
from receiver.reports.schedule import ON_TIME, Slot, due
from receiver.store.base import ReportSend, Store, StoreError

log = logging.getLogger("alert_router.pipeline.reports")

# How often the schedule and the queued sends are looked at: a slot is sent within this of
# its time (and counts as on time up to receiver.reports.schedule.ON_TIME after it).
POLL = 5.0
# Tries of one report to one destination before it is kept as a dead letter: with the
# pipeline's backoff (1 s doubling, with jitter) about two minutes of failures, enough
# for a Slack hiccup, short enough that a report is not hours late without anyone told.
ATTEMPTS = 8
# Sends claimed at once: few reports share a slot, and each is a Prometheus build.
_CLAIM = 16

# (name, spec, slot) -> the report of that slot, built from Prometheus.
BuildReport = Callable[[str, ReportSpec, Slot], Awaitable[Report]]
# Sends one report to one destination; `posted` is the ref of a report already posted
# whose chart failed alone (ChartNotUploaded), so only the chart is sent again.
PostReport = Callable[[Ref | None], Awaitable[Ref]]
# (destination, report, chart PNG or None) -> how to post it there, and how to close after.
Poster = Callable[[str, Report, bytes | None], tuple[PostReport, Callable[[], Awaitable[None]]]]


@dataclass(frozen=True, slots=True)
class ReportWork:
    """How the pipeline builds and sends a due report (receiver.runtime.report_work)."""

    build: BuildReport
    poster: Poster
    # The chart of a report as PNG bytes (drawn off the event loop).
    draw: Callable[[Report], Awaitable[bytes]]
    # Whether a destination takes the chart (a Slack bot: files.uploadV2).
    takes_chart: Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class Sent:
    """A report this replica delivered to one destination."""

    report: str
    slot: Slot
    destination: str


class ReportScheduler:
    """The report loop of one pipeline (`owner`: its claims' id)."""

    def __init__(
        self,
        store: Store,
        rules: Callable[[], Rules],
        work: ReportWork,
        *,
        owner: str,
        stopping: asyncio.Event,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        poll: float = POLL,
        tuning: Callable[[], Tuning] = Tuning,
        rng: random.Random | None = None,
        attempts: int = ATTEMPTS,
    ) -> None:
        self._store = store
        self._rules = rules
        self._work = work
        self._owner = owner
        self._stopping = stopping
        self._clock = clock
        self._poll = poll
        self._tuning = tuning
        self._rng = rng or random.Random()
        self._attempts = attempts

    def _now(self) -> float:
        return self._clock().timestamp()

    async def run(self) -> None:
        """Look at the schedule and the queue every `poll` seconds until `stopping`."""
        while not self._stopping.is_set():
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except StoreError as exc:
                log.error("reports paused: store unavailable", extra={"error": str(exc)})
            except Exception:
                log.exception("report loop failed")
            await pause(self._stopping, self._poll)

    async def tick(self) -> list[Sent]:
        """Queue each report whose slot is due and that this replica claims first, then
        send what is queued and due (this replica's, or a dead replica's)."""
        for name, spec in self._rules().reports.items():
            if self._stopping.is_set():
                return []
            now = self._clock()
            last = await self._store.last_report_slot(name)
            slot = due(spec, last, now)
            if slot is None:
                continue
            # The first slot of a report is recorded, not sent (see the module's text).
            destinations = () if last is None else spec.to
            if not await self._store.claim_report_slot(
                name, slot.at, self._owner, destinations, late=slot.late
            ):
                continue  # another replica (or this one before a restart) took it
            if last is None:
                log.info("report scheduled", extra={"report": name, "after": slot.at.isoformat()})
            else:
                log.info(
                    "report due",
                    extra={"report": name, "slot": slot.at.isoformat(), "late": slot.late},
                )
        return await self.send_due()

    async def send_due(self) -> list[Sent]:
        """Send the queued report sends that are due, holding their leases meanwhile."""
        lease = self._tuning().lease
        sends = await self._store.claim_report_sends(_CLAIM, self._now(), lease, self._owner)
        if not sends:
            return []
        held = [send.id for send in sends]
        renewing = asyncio.create_task(self._renew(held, lease), name="report-leases")
        sent: list[Sent] = []
        try:
            for (name, slot_at), group in itertools.groupby(
                sends, key=lambda s: (s.report, s.slot_at)
            ):
                if self._stopping.is_set():
                    break  # the leases run out and any replica sends the rest
                sent += await self._send_slot(name, slot_at, list(group), held)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
        return sent

    async def _renew(self, held: list[str], lease: float) -> None:
        """Keep the leases of `held` (sends still being worked on) alive."""
        while True:
            await asyncio.sleep(lease / 3)
            try:
                await self._store.renew_report_sends(self._owner, held, self._now(), lease)
            except StoreError as exc:
                log.warning("report leases not renewed", extra={"error": str(exc)})

    async def _send_slot(
        self, name: str, slot_at: datetime, sends: Sequence[ReportSend], held: list[str]
    ) -> list[Sent]:
        spec = self._rules().reports.get(name)
        if spec is None:
            for send in sends:
                await self._failed(send, f"report {name!r} is not in the rules any more", False)
            return []
        late = any(s.late for s in sends) or self._now() - slot_at.timestamp() > ON_TIME
        slot = Slot(slot_at, late=late)
        if any(s.taken_over for s in sends):
            log.warning(
                "report taken over from a replica that stopped renewing it",
                extra={"report": name, "slot": slot_at.isoformat()},
            )
        try:
            report = await self._work.build(name, spec, slot)
        except Exception as exc:
            log.exception("report not built", extra={"report": name})
            for send in sends:
                await self._failed(send, f"report not built: {type(exc).__name__}", True)
            return []
        chart = await self._chart(report, spec, sends)
        sent = []
        for send in sends:
            if self._stopping.is_set():
                break
            if await self._send(send, report, chart):
                sent.append(Sent(name, slot, send.destination))
            held.remove(send.id)
        return sent

    async def _chart(
        self, report: Report, spec: ReportSpec, sends: Sequence[ReportSend]
    ) -> bytes | None:
        if not spec.chart or not any(self._work.takes_chart(s.destination) for s in sends):
            return None
        try:
            return await self._work.draw(report)
        except Exception:
            # The text is the report; a chart that cannot be drawn must not hold it back.
            log.exception("report chart not drawn", extra={"report": report.name})
            return None

    async def _send(self, send: ReportSend, report: Report, chart: bytes | None) -> bool:
        """One try of one send; True when it was delivered."""
        destination = send.destination
        spec = self._rules().destinations.get(destination)
        if spec is None:
            await self._failed(send, f"destination {destination!r} is not in the rules", False)
            return False
        # The destination's pace is shared with its alerts, and with every replica.
        now = self._now()
        at = await self._store.reserve_send(destination, min_interval(spec), now)
        if at > now:
            await pause(self._stopping, at - now)
            if self._stopping.is_set():
                return False
        post, close = self._work.poster(
            destination, report, chart if self._work.takes_chart(destination) else None
        )
        try:
            await post(send.posted)
        except ChartNotUploaded as exc:
            await self._failed(send, str(exc), exc.recoverable, exc.retry_after, exc.ref)
            return False
        except NotifyError as exc:
            await self._failed(send, str(exc), exc.recoverable, exc.retry_after, send.posted)
            return False
        except Exception as exc:
            # A notifier bug must not lose the report: it is tried again later.
            log.exception("report send failed", extra={"destination": destination})
            await self._failed(send, type(exc).__name__, True, None, send.posted)
            return False
        finally:
            await close()
        await self._store.report_sent(self._owner, send)
        log.info(
            "report delivered",
            extra={
                "report": send.report,
                "slot": send.slot_at.isoformat(),
                "destination": destination,
                "attempts": send.attempts + 1,
            },
        )
        return True

    async def _failed(
        self,
        send: ReportSend,
        error: str,
        recoverable: bool,
        retry_after: float | None = None,
        posted: Ref | None = None,
    ) -> None:
        """A dead letter after a permanent error or the last try; else queued again."""
        now = self._now()
        where = {"report": send.report, "destination": send.destination, "error": error}
        if not recoverable or send.attempts + 1 >= self._attempts:
            await self._store.dead_letter_report_send(self._owner, send, error, now)
            log.error(
                "report not delivered",
                extra={**where, "attempts": send.attempts + 1, "posted": posted is not None},
            )
            return
        t = self._tuning()
        delay = backoff_delay(send.attempts, t.backoff_base, t.backoff_max, self._rng)
        if retry_after is not None:
            # The vendor said when: no request to this destination before then.
            delay = max(retry_after, 0.0)
            await self._store.pause_destination(send.destination, now + delay)
        await self._store.reschedule_report_send(self._owner, send, now + delay, error, posted)
        log.warning("report not delivered; will retry", extra={**where, "retry_in": delay})
