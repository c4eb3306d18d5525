"""The per-destination dedup decision (Alertmanager's DedupStage), shared by every store.

An alert episode (fingerprint + startsAt) is notified once per destination; again only
after the route's repeat_interval; its resolve once, and only where the firing was sent
(or is queued to be sent). The ledger is written only after a delivery succeeded.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from receiver.models import DedupReason

SENDING = frozenset({DedupReason.FIRST, DedupReason.REPEAT, DedupReason.RESOLVED})


@dataclass(frozen=True)
class LedgerEntry:
    """What was delivered to one destination for one episode."""

    firing_at: float | None
    resolved_at: float | None
    ref: dict[str, str] | None = None


def decide(
    status: str,
    entry: LedgerEntry | None,
    pending: Collection[str],
    *,
    repeat_interval: float,
    send_resolved: bool,
    now: float,
) -> DedupReason:
    """Why this notification is sent or suppressed. `pending`: statuses already queued."""
    if status == "firing":
        if "firing" in pending:
            return DedupReason.PENDING
        if entry is None or entry.firing_at is None:
            return DedupReason.FIRST
        if entry.resolved_at is not None:
            return DedupReason.ALREADY_RESOLVED
        if now - entry.firing_at >= repeat_interval:
            return DedupReason.REPEAT
        return DedupReason.ALREADY_NOTIFIED
    if not send_resolved:
        return DedupReason.SEND_RESOLVED_OFF
    if "resolved" in pending:
        return DedupReason.PENDING
    if entry is not None and entry.resolved_at is not None:
        return DedupReason.ALREADY_RESOLVED
    if (entry is not None and entry.firing_at is not None) or "firing" in pending:
        return DedupReason.RESOLVED
    return DedupReason.NOT_NOTIFIED
