"""The history's records: one event per thing that happened to an alert episode.

An episode is one firing-to-resolve life of an alert (`receiver.models.episode_key`).
Each event names its kind and carries the details of that kind in `data` (JSON values
only: str, int, float, bool, None, lists and dicts of them), as listed at EventKind.
The store keeps, per episode, the alert's identity (EpisodeMeta) and its events in order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson


class EventKind(StrEnum):
    """The kinds of event, and the keys of each one's `data`."""

    # A webhook carried the alert. data: receiver, group_key, external_url, user_agent,
    # source ("alertmanager" | "grafana"), status ("firing" | "resolved"), duplicate
    # (bool: an exact copy seen within the dedup window, not stored again), alert (the
    # alert as receiver.store.codec stores it, decoded to a dict: for the rendered
    # message; only on the first event of an episode and of its resolve).
    RECEIVED = "received"
    # Cost context added. data: values [{name, title, value, unit, query}], unavailable
    # [{name, reason, query}].
    CONTEXT = "context"
    # A route matched. data: route, matchers [str, Alertmanager syntax], when
    # [{condition, values {name: number}}], destinations [str], resolve (bool: a resolve,
    # sent where its firing may have gone: every route whose matchers match, no `when`).
    # No route: route "" and destinations [].
    ROUTED = "routed"
    # The dedup decision for one destination. destination set; data: status, reason
    # (receiver.models.DedupReason value), sent (bool: queued to send).
    DEDUP = "dedup"
    # A delivery try that failed. destination set; data: attempt (1-based), error
    # (redacted), http_status (int | None), recoverable (bool), retry_in (seconds |
    # None), retry_after (the vendor's Retry-After, seconds | None).
    ATTEMPT = "attempt"
    # Delivered. destination set; data: attempt, ref (Slack: channel, ts, permalink for
    # a bot; PagerDuty: dedup_key), digest (int: alerts in the same message).
    DELIVERED = "delivered"
    # Kept as a dead letter. destination set; data: error, attempts.
    DEAD_LETTER = "dead_letter"
    # Queued again from the dead letters. destination set; data: by (who: "cli", or
    # "ui:<user>"), dead_letter (its id).
    REPLAYED = "replayed"
    # Silenced from Slack's button. data: by (Slack user), silence_id, duration.
    SILENCED = "silenced"
    # Acknowledged from Slack's button (PagerDuty). data: by (Slack user), destination.
    ACKNOWLEDGED = "acknowledged"
    # The episode resolved. data: cost (dollars | None), duration (seconds), per_hour.
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Event:
    at: float  # Unix time
    fingerprint: str
    episode: str  # receiver.models.episode_key
    kind: EventKind
    data: Mapping[str, Any] = field(default_factory=dict)
    destination: str = ""


@dataclass(frozen=True, slots=True)
class EpisodeMeta:
    """Who the episode is: written with its first event, never changed after."""

    fingerprint: str
    episode: str
    alertname: str
    labels: Mapping[str, str]
    source: str
    started_at: float  # the alert's startsAt


@dataclass(frozen=True, slots=True)
class Timeline:
    """One episode with its events, oldest first, and when it last changed."""

    meta: EpisodeMeta
    events: Sequence[Event]
    last_at: float


def dump_data(value: Mapping[str, Any]) -> bytes:
    """An event's data (or an episode's labels) as JSON, as both stores keep it. Never
    fails: a value JSON has no type for is kept as its text, so one odd value cannot make
    the recorder retry its batch forever."""
    return orjson.dumps(
        value if isinstance(value, dict) else dict(value),
        default=str,
        option=orjson.OPT_NON_STR_KEYS,
    )


def dump_events(items: Sequence[Sequence[Any]]) -> bytes:
    """Several events of one episode, [at, kind, destination, data] each, as JSON; never
    fails, as `dump_data`."""
    return orjson.dumps(items, default=str, option=orjson.OPT_NON_STR_KEYS)


@dataclass(frozen=True, slots=True)
class DestinationNews:
    """What a batch of events says of one destination: its latest delivery and its latest
    error (a failed attempt or a dead letter), each None when the batch has none."""

    destination: str
    delivered_at: float | None
    error: str | None
    error_at: float | None


def destination_news(events: Sequence[Event]) -> list[DestinationNews]:
    """Per destination named in `events`, in first-seen order (both stores keep these)."""
    delivered: dict[str, float] = {}
    errors: dict[str, tuple[float, str]] = {}
    seen: dict[str, None] = {}
    for event in events:
        name = event.destination
        if not name:
            continue
        if event.kind is EventKind.DELIVERED:
            seen[name] = None
            delivered[name] = max(event.at, delivered.get(name, event.at))
        elif event.kind in (EventKind.ATTEMPT, EventKind.DEAD_LETTER):
            seen[name] = None
            last = errors.get(name)
            if last is None or event.at >= last[0]:
                errors[name] = (event.at, str(event.data.get("error", "")))
    news = []
    for name in seen:
        error = errors.get(name)
        news.append(
            DestinationNews(
                name,
                delivered.get(name),
                None if error is None else error[1],
                None if error is None else error[0],
            )
        )
    return news
