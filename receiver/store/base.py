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
from receiver.models import Alert, CostContext, DedupReason


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
class DeadLetter:
    id: str
    destination: str
    alertname: str
    episode: str
    status: str
    error: str
    attempts: int
    failed_at: float


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

    async def dead_letters(self) -> list[DeadLetter]: ...

    async def replay_dead_letters(self, ids: Sequence[str] | None, now: float) -> int:
        """Queue dead letters again (all when `ids` is None); returns how many."""
        ...

    async def ledger_entry(self, destination: str, episode: str) -> LedgerEntry | None: ...

    async def depths(self) -> dict[str, int]:
        """Counts of `inbox`, `outbox` and `dead_letters`."""
        ...

    async def queued_destinations(self) -> set[str]:
        """The destinations with notifications in the outbox (waiting, due or leased)."""
        ...

    async def check_writable(self) -> None:
        """Raise StoreError when a write would fail."""
        ...

    async def purge(self, now: float, window: float, ledger_retention: float) -> None:
        """Forget ingest copies older than `window` and ledger entries older than retention."""
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

    async def claim_report_slot(self, report: str, slot_at: datetime, owner: str) -> bool:
        """Take the scheduled time `slot_at` of `report` for `owner`, atomically: True for
        exactly one caller across every replica and restart, False for all the others
        (set-if-absent). The latest slot taken is what `last_report_slot` answers."""
        ...

    async def last_report_slot(self, report: str) -> datetime | None:
        """The latest scheduled time of `report` that was claimed; None if none was."""
        ...
