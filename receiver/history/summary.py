"""One episode at a glance: its status, route, cost context and each destination's fate,
from its timeline (the alerts list of the page and the API)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from receiver.events import EpisodeMeta, Event, EventKind, Timeline
from receiver.models import Unit

# The states an Outcome can be in.
DELIVERED = "delivered"
RETRYING = "retrying"
DEAD_LETTER = "dead_letter"
SUPPRESSED = "suppressed"
QUEUED = "queued"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One destination's fate in an episode."""

    destination: str
    state: str  # DELIVERED | RETRYING | DEAD_LETTER | SUPPRESSED | QUEUED
    detail: str  # the dedup reason, or the last error, or ""
    at: float
    ref: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class EpisodeSummary:
    meta: EpisodeMeta
    status: str  # "firing" | "resolved" (the latest received/resolved event)
    last_at: float
    route: str  # "" when no route matched
    context: Sequence[Mapping[str, Any]]  # the CONTEXT event's values
    cost_per_hour: float | None  # the first value with unit usd_per_hour
    outcomes: Sequence[Outcome]  # one per destination, in first-seen order
    incident_cost: float | None  # from the RESOLVED event


def summarize(timeline: Timeline) -> EpisodeSummary:
    status = "firing"
    route = ""
    context: Sequence[Mapping[str, Any]] = []
    incident_cost: float | None = None
    outcomes: dict[str, Outcome] = {}
    for event in timeline.events:
        kind, data = event.kind, event.data
        if kind is EventKind.RECEIVED:
            status = str(data.get("status", status))
        elif kind is EventKind.RESOLVED:
            status = "resolved"
            incident_cost = _number(data.get("cost"))
        elif kind is EventKind.ROUTED:
            route = str(data.get("route") or "")
        elif kind is EventKind.CONTEXT:
            context = list(data.get("values") or ())
        elif event.destination:
            outcome = _outcome(event, outcomes.get(event.destination))
            if outcome is not None:
                outcomes[event.destination] = outcome
    return EpisodeSummary(
        meta=timeline.meta,
        status=status,
        last_at=timeline.last_at,
        route=route,
        context=context,
        cost_per_hour=_cost_per_hour(context),
        outcomes=list(outcomes.values()),
        incident_cost=incident_cost,
    )


def _outcome(event: Event, before: Outcome | None) -> Outcome | None:
    """The destination's fate after `event`; None when the event does not change it."""
    data, destination, at = event.data, event.destination, event.at
    if event.kind is EventKind.DEDUP:
        reason = str(data.get("reason", ""))
        if data.get("sent"):
            return Outcome(destination, QUEUED, reason, at)
        # A copy suppressed later (Alertmanager re-sends a firing alert) does not hide
        # that the episode was delivered, or is still being tried.
        if before is None or before.state == SUPPRESSED:
            return Outcome(destination, SUPPRESSED, reason, at)
        return None
    if event.kind is EventKind.ATTEMPT:
        return Outcome(destination, RETRYING, str(data.get("error", "")), at)
    if event.kind is EventKind.DELIVERED:
        ref = data.get("ref")
        refs = {str(k): str(v) for k, v in ref.items()} if isinstance(ref, Mapping) else None
        return Outcome(destination, DELIVERED, "", at, refs or None)
    if event.kind is EventKind.DEAD_LETTER:
        return Outcome(destination, DEAD_LETTER, str(data.get("error", "")), at)
    if event.kind is EventKind.REPLAYED:
        return Outcome(destination, QUEUED, f"replayed by {data.get('by', '')}".strip(), at)
    return None


def _cost_per_hour(context: Sequence[Mapping[str, Any]]) -> float | None:
    for value in context:
        if value.get("unit") == Unit.USD_PER_HOUR.value:
            return _number(value.get("value"))
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
