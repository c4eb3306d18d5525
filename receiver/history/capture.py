"""The history's events, made from what the ingest, routing and delivery steps already hold.

Pure functions: the steps hand their objects to the recorder (`receiver.history.recorder`)
as a deferred batch, and these build the events when the recorder flushes, away from the
webhook's acknowledgement. Each event's `data` keys are the ones `receiver.events.EventKind`
documents.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from receiver.config.rules import Rules
from receiver.context.incident import INCIDENT_COST
from receiver.events import EpisodeMeta, Event, EventKind
from receiver.history.recorder import Recorded
from receiver.models import Alert, CostContext, DedupReason, Unit
from receiver.routing.routes import Choice
from receiver.store.base import REPORT_DEAD_LETTER, DeadLetter, Decision, IngestResult, OutboxItem


def meta(alert: Alert) -> EpisodeMeta:
    return EpisodeMeta(
        fingerprint=alert.fingerprint,
        episode=alert.episode,
        alertname=alert.name,
        labels=dict(alert.labels),
        source=alert.source,
        started_at=alert.starts_at.timestamp(),
    )


def _event(
    at: float, alert: Alert, kind: EventKind, data: Mapping[str, Any], destination: str = ""
) -> Event:
    return Event(at, alert.fingerprint, alert.episode, kind, data, destination)


def _received_data(alert: Alert, duplicate: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "receiver": alert.receiver,
        "group_key": alert.group_key,
        "external_url": alert.external_url,
        "user_agent": alert.user_agent,
        "source": alert.source,
        "status": alert.status,
        "duplicate": duplicate,
    }
    if not duplicate and alert.firing:
        data["alert"] = alert.to_json()  # for the page's rendered message
    return data


def received(alerts: Sequence[Alert], result: IngestResult, *, at: float) -> Iterator[Recorded]:
    """RECEIVED for each copy of a webhook that was a duplicate at ingest (not stored):
    the stored alerts' RECEIVED come with their routing (`routed`)."""
    for alert, duplicate in zip(alerts, result.duplicate, strict=True):
        if duplicate:
            yield _event(at, alert, EventKind.RECEIVED, _received_data(alert, True)), meta(alert)


def _context_data(rules: Rules, context: CostContext) -> dict[str, Any]:
    def query(name: str) -> str:
        spec = rules.context.get(name)
        return spec.query if spec is not None else ""

    return {
        "values": [
            {
                "name": v.name,
                "title": v.title,
                "value": v.value,
                "unit": v.unit.value,
                "query": query(v.name),
            }
            for v in context.values
        ],
        "unavailable": [
            {"name": name, "reason": reason, "query": query(name)}
            for name, reason in context.unavailable
        ],
    }


def _routed_data(alert: Alert, choice: Choice) -> dict[str, Any]:
    """The route(s) that matched and why: their matchers, and each `when` with the values
    it compared. A resolve goes where its firing may have gone (all matching routes)."""
    routes = choice.routes
    values = choice.values
    return {
        "route": ", ".join(r.name for r in routes),
        "matchers": list(dict.fromkeys(str(m) for r in routes for m in r.matchers)),
        # A resolve's routes are chosen by their matchers alone: no `when` decided them.
        "when": [
            {
                "condition": str(c),
                "values": {c.context: values[c.context]} if c.context in values else {},
            }
            for r in routes
            for c in r.when
        ]
        if alert.firing
        else [],
        "destinations": [t.destination for t in choice.targets],
        "resolve": not alert.firing,
    }


def routed(
    rules: Rules,
    alerts: Sequence[Alert],
    contexts: Sequence[CostContext],
    choices: Sequence[Choice],
    decisions: Sequence[Decision],
    *,
    stored_at: Sequence[float],
    at: float,
    sending: frozenset[DedupReason],
) -> Iterator[Recorded]:
    """RECEIVED (at `stored_at`, when each was stored), CONTEXT and ROUTED per alert (the
    routing's own `choices`), DEDUP per destination decided, RESOLVED per resolve."""
    by_episode: dict[tuple[str, str], list[Decision]] = {}
    for decision in decisions:
        by_episode.setdefault((decision.episode, decision.status), []).append(decision)
    for alert, context, choice, received_at in zip(
        alerts, contexts, choices, stored_at, strict=True
    ):
        # When it was stored: the webhook's time, not the routing's.
        data = _received_data(alert, False)
        yield _event(received_at, alert, EventKind.RECEIVED, data), meta(alert)
        yield _event(at, alert, EventKind.CONTEXT, _context_data(rules, context)), None
        yield _event(at, alert, EventKind.ROUTED, _routed_data(alert, choice)), None
        for decision in by_episode.get((alert.episode, alert.status), ()):
            data = {
                "status": decision.status,
                "reason": decision.reason.value,
                "sent": decision.reason in sending,
            }
            yield _event(at, alert, EventKind.DEDUP, data, decision.destination), None
        if not alert.firing:
            yield _event(at, alert, EventKind.RESOLVED, _resolved_data(alert, context)), None


def _resolved_data(alert: Alert, context: CostContext) -> dict[str, Any]:
    ends = alert.ends_at.timestamp() if alert.ends_at is not None else None
    per_hour = next((v.value for v in context.values if v.unit is Unit.USD_PER_HOUR), None)
    return {
        "cost": context.get(INCIDENT_COST),
        "duration": None if ends is None else max(ends - alert.starts_at.timestamp(), 0.0),
        "per_hour": per_hour,
    }


def delivered(
    items: Sequence[OutboxItem],
    refs: Sequence[Mapping[str, str] | None],
    *,
    at: float,
    permalink: str | None = None,
) -> Iterator[Recorded]:
    """DELIVERED per notification of one message (a digest carries several)."""
    for item, ref in zip(items, refs, strict=True):
        shown: dict[str, str] = dict(ref or {})
        if permalink:
            shown["permalink"] = permalink
        data = {"attempt": item.attempts + 1, "ref": shown, "digest": len(items)}
        yield _event(at, item.alert, EventKind.DELIVERED, data, item.destination), None


def attempt_failed(
    items: Sequence[OutboxItem],
    *,
    at: float,
    error: str,
    http_status: int | None,
    recoverable: bool,
    retry_in: float | None,
    retry_after: float | None,
) -> Iterator[Recorded]:
    """ATTEMPT per notification of a failed send, and DEAD_LETTER when it was the end."""
    for item in items:
        data = {
            "attempt": item.attempts + 1,
            "error": error,
            "http_status": http_status,
            "recoverable": recoverable,
            "retry_in": retry_in,
            "retry_after": retry_after,
        }
        yield _event(at, item.alert, EventKind.ATTEMPT, data, item.destination), None
        if retry_in is None:
            dead = {"error": error, "attempts": item.attempts + 1}
            yield _event(at, item.alert, EventKind.DEAD_LETTER, dead, item.destination), None


def replayed_events(
    letters: Mapping[str, DeadLetter], ids: Sequence[str], at: float, *, by: str
) -> list[Event]:
    """REPLAYED for each alert dead letter of `ids` queued again (`by`: who did it)."""
    events = []
    for id_ in ids:
        letter = letters.get(id_)
        if letter is None or id_.startswith(REPORT_DEAD_LETTER):
            continue
        # An alert's episode key is `fingerprint@startsAt` (receiver.models.episode_key).
        fingerprint = letter.episode.rpartition("@")[0]
        data = {"by": by, "dead_letter": id_}
        events.append(
            Event(at, fingerprint, letter.episode, EventKind.REPLAYED, data, letter.destination)
        )
    return events
