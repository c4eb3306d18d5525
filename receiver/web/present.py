"""How the page and the API show history: times in UTC and "3 min ago", episodes, events,
dead letters and destinations as JSON values (the API answers them; the templates read the
same values)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from receiver.config.durations import format_elapsed
from receiver.events import Event
from receiver.history.summary import EpisodeSummary, Outcome
from receiver.history.timeline import describe
from receiver.models import format_time
from receiver.store.base import DeadLetter, DestinationState

# The labels a row shows beside the alert's name, the first ones an alert carries.
MAIN_LABELS = ("severity", "service", "namespace", "team", "instance", "Hostname", "gpu", "job")
_MAIN_LABELS_SHOWN = 4


def rfc3339(at: float | None) -> str | None:
    """A Unix time as RFC 3339 in UTC (the API's times); None stays None."""
    if at is None:
        return None
    return format_time(datetime.fromtimestamp(at, UTC))


def utc(at: float | None) -> str:
    """A Unix time for people: `2024-05-01 12:03:07 UTC`."""
    if at is None:
        return ""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(at: float | None, now: float) -> str:
    """How long before `now`, as `alert-router explain` and Slack's resolved messages say
    it: `just now`, `3m 20s ago`, `2h 5m ago`, `4d 1h ago`; a time ahead (a pause until)
    reads `in 40s`."""
    if at is None:
        return ""
    seconds = now - at
    if abs(seconds) < 5:
        return "just now"
    amount = format_elapsed(abs(seconds))
    return f"{amount} ago" if seconds > 0 else f"in {amount}"


def main_labels(labels: dict[str, str] | Any) -> list[tuple[str, str]]:
    """The few labels that tell one episode's row from another's."""
    found = [(name, labels[name]) for name in MAIN_LABELS if name in labels]
    return found[:_MAIN_LABELS_SHOWN]


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "destination": outcome.destination,
        "state": outcome.state,
        "detail": outcome.detail,
        "at": rfc3339(outcome.at),
        "ref": dict(outcome.ref) if outcome.ref else None,
    }


def summary_json(summary: EpisodeSummary) -> dict[str, Any]:
    meta = summary.meta
    return {
        "fingerprint": meta.fingerprint,
        "episode": meta.episode,
        "alertname": meta.alertname,
        "labels": dict(meta.labels),
        "source": meta.source,
        "started_at": rfc3339(meta.started_at),
        "status": summary.status,
        "last_at": rfc3339(summary.last_at),
        "route": summary.route,
        "context": [dict(value) for value in summary.context],
        "cost_per_hour": summary.cost_per_hour,
        "incident_cost": summary.incident_cost,
        "outcomes": [outcome_json(o) for o in summary.outcomes],
    }


def event_json(event: Event) -> dict[str, Any]:
    return {
        "at": rfc3339(event.at),
        "kind": event.kind.value,
        "destination": event.destination or None,
        "text": describe(event),
        "data": dict(event.data),
    }


def dead_letter_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "destination": letter.destination,
        "alertname": letter.alertname,
        "episode": letter.episode,
        "status": letter.status,
        "error": letter.error,
        "attempts": letter.attempts,
        "failed_at": rfc3339(letter.failed_at),
    }


def destination_json(kind: str, state: DestinationState) -> dict[str, Any]:
    return {
        "kind": kind,
        "last_delivered_at": rfc3339(state.last_delivered_at),
        "last_error": state.last_error,
        "last_error_at": rfc3339(state.last_error_at),
        "paused_until": rfc3339(state.paused_until),
    }
