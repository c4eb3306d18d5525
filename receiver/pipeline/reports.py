"""Scheduled reports: which slot is due, which replica sends it, and sending it once.

Every few seconds, for each report of the rules, `receiver.reports.schedule.due` says
which scheduled time (slot) should be sent now, given the latest slot the store recorded.
The replica whose `claim_report_slot` succeeds builds the report for that slot and hands
it to `deliver`; every other replica, and this one after a restart, sees the slot taken
and skips it. A slot missed while every replica was down is sent once, late (and says
so), while the router is back within the report's window.

A report the store has never recorded a slot for (a new report, or a fresh store) starts
with its next scheduled time: the slot before it is recorded, not sent, so a router that
starts at 15:00 does not send the morning's report late.

The claim is taken before the report is sent, so a replica that dies between the two
loses that slot's report rather than sending it twice. Sending retries a failure Slack
calls temporary a few times (a chart that failed alone is uploaded again, alone).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from receiver.config.reports import ReportSpec
from receiver.config.rules import Rules
from receiver.notify.base import NotifyError, Ref
from receiver.notify.slack.bot import ChartNotUploaded
from receiver.pipeline.scheduler import pause
from receiver.reports.model import Report
from receiver.reports.schedule import Slot, due
from receiver.store.base import Store, StoreError

log = logging.getLogger("alert_router.pipeline.reports")

# How often the schedule is looked at: a slot is sent within this of its time (and counts
# as on time up to receiver.reports.schedule.ON_TIME after it).
POLL = 5.0

# (name, spec, slot) -> the report of that slot, built from Prometheus.
BuildReport = Callable[[str, ReportSpec, Slot], Awaitable[Report]]
# (name, spec, report) -> sent to the report's destinations.
DeliverReport = Callable[[str, ReportSpec, Report], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ReportWork:
    """How the pipeline builds and delivers a due report (receiver.runtime.report_work)."""

    build: BuildReport
    deliver: DeliverReport


# Sends one report to one destination; `posted` is the ref of a report already posted
# whose chart failed alone (ChartNotUploaded), so only the chart is sent again.
PostReport = Callable[[Ref | None], Awaitable[Ref]]

ATTEMPTS = 4
BACKOFF = 2.0  # seconds before the second try, doubled for each after it


async def post_with_retries(
    destination: str, report: str, post: PostReport, stopping: asyncio.Event
) -> bool:
    """Send with up to ATTEMPTS tries, waiting Retry-After (or the backoff) between them;
    False, logged, when a permanent error or the last try failed."""
    posted: Ref | None = None
    error: NotifyError | None = None
    for attempt in range(ATTEMPTS):
        try:
            await post(posted)
            return True
        except ChartNotUploaded as exc:
            posted, error = exc.ref, exc
        except NotifyError as exc:
            error = exc
        if not error.recoverable or attempt == ATTEMPTS - 1 or stopping.is_set():
            break
        await pause(stopping, error.retry_after or BACKOFF * 2**attempt)
    log.error(
        "report not delivered",
        extra={
            "report": report,
            "destination": destination,
            "error": str(error),
            "posted": posted is not None,
        },
    )
    return False


@dataclass(frozen=True, slots=True)
class Sent:
    """A slot this replica claimed and handed to `deliver`."""

    report: str
    slot: Slot


class ReportScheduler:
    """The report loop of one pipeline (`owner`: its claims' id)."""

    def __init__(
        self,
        store: Store,
        rules: Callable[[], Rules],
        build: BuildReport,
        deliver: DeliverReport,
        *,
        owner: str,
        stopping: asyncio.Event,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        poll: float = POLL,
    ) -> None:
        self._store = store
        self._rules = rules
        self._build = build
        self._deliver = deliver
        self._owner = owner
        self._stopping = stopping
        self._clock = clock
        self._poll = poll

    async def run(self) -> None:
        """Look at the schedule every `poll` seconds until `stopping` is set."""
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
        """Send each report whose slot is due and that this replica claims first."""
        sent: list[Sent] = []
        for name, spec in self._rules().reports.items():
            if self._stopping.is_set():
                break
            now = self._clock()
            last = await self._store.last_report_slot(name)
            slot = due(spec, last, now)
            if slot is None:
                continue
            if not await self._store.claim_report_slot(name, slot.at, self._owner):
                # Another replica (or this one before a restart) took it.
                continue
            if last is None:
                log.info(
                    "report scheduled",
                    extra={"report": name, "after": slot.at.isoformat()},
                )
                continue
            log.info(
                "report due",
                extra={"report": name, "slot": slot.at.isoformat(), "late": slot.late},
            )
            report = await self._build(name, spec, slot)
            await self._deliver(name, spec, report)
            sent.append(Sent(name, slot))
        return sent
