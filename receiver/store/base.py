"""The durable store behind the pipeline: ingest idempotency, the queues, the ledger.

Two implementations share this interface and one contract test suite: SQLite (the
embedded default, one replica) and Redis (several replicas).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from receiver.dedup import LedgerEntry
from receiver.events import EpisodeMeta, Event, Timeline
from receiver.models import Alert, CostContext, DedupReason

# The events one episode keeps (its latest): an alert flapping for a week must not grow
# without bound; the first events (received, routed) are in the episode's meta anyway.
HISTORY_EVENTS_PER_EPISODE = 500

# Report slots older than this are forgotten (each report's latest is kept: it is what the
# schedule starts from); longer than any report's window, within which a slot may be sent.
REPORT_SLOT_RETENTION = 40 * 86400.0


class StoreError(Exception):
    """The store cannot read or write; ingest answers 503 so Alertmanager retries."""


class ReadOnlyStoreError(StoreError):
    """A write to a store opened read-only (`open_store(..., read_only=True)`)."""

    def __init__(self) -> None:
        super().__init__("the store is open read-only")


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    # Per alert, in the order given: True for an exact copy seen within the window (not
    # stored again), for the history's "received" events.
    duplicate: tuple[bool, ...] = ()


@dataclass(frozen=True)
class InboxItem:
    """An accepted alert waiting to be enriched and routed."""

    id: str
    alert: Alert
    received_at: float
    # Claimed before by a replica whose lease ran out (it died, or stalled for a lease).
    taken_over: bool = False


@dataclass(frozen=True)
class Planned:
    """A candidate notification: this alert, routed to this destination by this route."""

    destination: str
    route: str
    repeat_interval: float
    send_resolved: bool
    alert: Alert
    context: CostContext
    received_at: float


@dataclass(frozen=True)
class Decision:
    destination: str
    episode: str
    status: str
    reason: DedupReason


@dataclass(frozen=True)
class OutboxItem:
    """A notification waiting for (or in) delivery to its destination."""

    id: str
    destination: str
    route: str
    reason: DedupReason
    alert: Alert
    context: CostContext
    received_at: float
    attempts: int
    ref: Mapping[str, str] | None
    # Claimed before by a replica whose lease ran out: that replica may have sent it (a
    # send in flight at a crash), so this send may be a duplicate.
    taken_over: bool = False


@dataclass(frozen=True)
class Claims:
    """Ids of claimed work: inbox items and outbox notifications (any destination)."""

    inbox: tuple[str, ...] = ()
    outbox: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.inbox or self.outbox)


@dataclass(frozen=True)
class ReportSend:
    """One destination's copy of one scheduled report slot, queued until it is sent."""

    id: str
    report: str
    slot_at: datetime
    # Claimed after its time had passed (the router was down at it): the report says so.
    late: bool
    destination: str
    attempts: int
    # The report's message, posted on an earlier try whose chart upload failed: the next
    # try uploads only the chart, so the report is never posted twice.
    posted: Mapping[str, str] | None = None
    # Claimed before by a replica whose lease ran out: it may have posted it already.
    taken_over: bool = False


# A report's dead letter id starts with this; an alert's is a number.
REPORT_DEAD_LETTER = "report-"


@dataclass(frozen=True)
class DeadLetter:
    """A notification, or a report (`status` "report", `alertname` the report's name and
    `episode` its slot), that will not be tried again until it is replayed."""

    id: str
    destination: str
    alertname: str
    episode: str
    status: str
    error: str
    attempts: int
    failed_at: float


@dataclass(frozen=True)
class DestinationState:
    """What the store knows of one destination, across replicas (the status page)."""

    last_delivered_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    paused_until: float | None = None


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ingest(self, alerts: Sequence[Alert], now: float, window: float) -> IngestResult:
        """Store new alerts durably; exact copies seen within `window` seconds are
        duplicates. Returns only after the new alerts are durable."""
        ...

    async def claim_inbox(
        self, limit: int, now: float, lease: float, owner: str = ""
    ) -> list[InboxItem]:
        """Lease up to `limit` inbox items to `owner` until `now + lease`."""
        ...

    async def plan(
        self, inbox_ids: Sequence[str], planned: Sequence[Planned], now: float
    ) -> list[Decision]:
        """Atomically: decide each candidate against the ledger and the queued work
        (receiver.dedup.decide), queue those to send, and retire the inbox items."""
        ...

    async def ready_count(self, destination: str, now: float, at_most: int | None = None) -> int:
        """Notifications ready to send to `destination` at `now` (not leased, due),
        counted up to `at_most` (None: all of them)."""
        ...

    async def claim_outbox(
        self, destination: str, limit: int, now: float, lease: float, owner: str = ""
    ) -> list[OutboxItem]:
        """Lease up to `limit` ready notifications of `destination` to `owner` until
        `now + lease`."""
        ...

    async def renew(self, owner: str, claims: Claims, now: float, lease: float) -> Claims:
        """Extend to `now + lease` each of `claims` that `owner` still holds (its lease not
        yet run out); returns those it no longer holds (settled, or taken over)."""
        ...

    async def release(self, owner: str, claims: Claims) -> int:
        """Make each of `claims` that `owner` holds claimable at once (a graceful stop);
        returns how many were released."""
        ...

    async def delivered(
        self, items: Sequence[OutboxItem], refs: Sequence[Mapping[str, str] | None], now: float
    ) -> None:
        """Record success in the ledger and retire the items, in one step."""
        ...

    async def reschedule(
        self, items: Sequence[OutboxItem], not_before: float, error: str
    ) -> None: ...

    async def dead_letter(self, items: Sequence[OutboxItem], error: str, now: float) -> None: ...

    async def dead_letters(self) -> list[DeadLetter]:
        """The notifications' dead letters, then the reports' (ids REPORT_DEAD_LETTER...)."""
        ...

    async def replay_dead_letters(self, ids: Sequence[str] | None, now: float) -> int:
        """Queue dead letters again, notifications and reports (all when `ids` is None);
        returns how many."""
        ...

    async def ledger_entry(self, destination: str, episode: str) -> LedgerEntry | None: ...

    async def resolve_queued(self, destination: str, episode: str) -> bool:
        """Whether the episode's resolve for `destination` is in the outbox: waiting, being
        sent or waiting for a retry. Its ledger entry is written only once it was sent."""
        ...

    async def depths(self) -> dict[str, int]:
        """Counts of `inbox`, `outbox` and `dead_letters` (the reports' included)."""
        ...

    async def queued_destinations(self) -> set[str]:
        """The destinations with notifications in the outbox (waiting, due or leased)."""
        ...

    async def check_writable(self) -> None:
        """Raise StoreError when a write would fail."""
        ...

    async def purge(self, now: float, window: float, ledger_retention: float) -> None:
        """Forget ingest copies older than `window`, ledger entries older than retention,
        and report slots older than REPORT_SLOT_RETENTION but each report's latest."""
        ...

    async def reserve_send(self, destination: str, interval: float, now: float) -> float:
        """Reserve the next send slot of a rate-limited destination, shared by every
        replica: returns the time the caller may send (>= now, and >= any pause).
        Slots are `interval` seconds apart."""
        ...

    async def pause_destination(self, destination: str, until: float) -> None:
        """No send to `destination` before `until` (a vendor's Retry-After), for every
        replica."""
        ...

    async def claim_report_slot(
        self,
        report: str,
        slot_at: datetime,
        owner: str,
        destinations: Sequence[str] = (),
        *,
        late: bool = False,
    ) -> bool:
        """Take the scheduled time `slot_at` of `report` for `owner`, atomically: True for
        exactly one caller across every replica and restart, False for all the others
        (set-if-absent). The latest slot taken is what `last_report_slot` answers. In the
        same step, the caller that takes it queues one ReportSend per destination."""
        ...

    async def claim_report_sends(
        self, limit: int, now: float, lease: float, owner: str
    ) -> list[ReportSend]:
        """Lease up to `limit` queued report sends that are due (`not_before` passed, no
        live lease) to `owner` until `now + lease`, oldest slot first."""
        ...

    async def renew_report_sends(
        self, owner: str, ids: Sequence[str], now: float, lease: float
    ) -> set[str]:
        """Extend to `now + lease` each send of `ids` that `owner` still holds; returns the
        ids it holds."""
        ...

    async def report_sent(self, owner: str, send: ReportSend) -> bool:
        """Retire a send `owner` holds; False when it holds it no longer."""
        ...

    async def reschedule_report_send(
        self,
        owner: str,
        send: ReportSend,
        not_before: float,
        error: str,
        posted: Mapping[str, str] | None,
    ) -> None:
        """Count a failed try of a send `owner` holds and queue it again at `not_before`."""
        ...

    async def dead_letter_report_send(
        self, owner: str, send: ReportSend, error: str, now: float
    ) -> None:
        """Keep a send `owner` holds as a dead letter (its try counted)."""
        ...

    async def last_report_slot(self, report: str) -> datetime | None:
        """The latest scheduled time of `report` that was claimed; None if none was."""
        ...

    # -- history (receiver.history): what happened to each alert episode, and why ----------

    async def record_history(self, metas: Sequence[EpisodeMeta], events: Sequence[Event]) -> None:
        """Append `events` (one transaction or script: the recorder's batch), and the
        metas of their episodes (set-if-absent: an episode's first meta stays). An
        episode keeps at most HISTORY_EVENTS_PER_EPISODE events, its latest."""
        ...

    async def recent_episodes(
        self, since: float, limit: int, before: float | None = None
    ) -> list[tuple[EpisodeMeta, float]]:
        """Episodes changed at or after `since` (and before `before`, for paging), each
        with when it last changed, latest first, at most `limit`."""
        ...

    async def timelines(self, episodes: Sequence[tuple[str, str]]) -> list[Timeline]:
        """The timelines of (fingerprint, episode) pairs, in the order asked; unknown
        pairs are left out."""
        ...

    async def alert_timelines(self, fingerprint: str) -> list[Timeline]:
        """Every kept episode of one alert, latest started first."""
        ...

    async def destination_states(self) -> dict[str, DestinationState]:
        """Each destination's last delivery and last error (from the history) and pause."""
        ...

    async def purge_history(self, before: float, max_episodes: int) -> int:
        """Forget episodes last changed before `before`, then the oldest beyond
        `max_episodes`; returns how many episodes were forgotten."""
        ...
