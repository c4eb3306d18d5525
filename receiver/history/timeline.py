"""One plain-text line per history event, for a tired on-call engineer: the CLI's
`explain` and the page's timeline both print these."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from receiver.config.durations import format_duration, format_elapsed
from receiver.context.units import format_value
from receiver.events import Event, EventKind
from receiver.models import Unit


def describe(event: Event) -> str:
    """What happened, and why, in one line."""
    return _DESCRIBE[event.kind](event.data, event.destination)


def _received(data: Mapping[str, Any], _: str) -> str:
    source = data.get("source") or "alertmanager"
    details = []
    if data.get("receiver"):
        details.append(f'receiver "{data["receiver"]}"')
    if data.get("group_key"):
        details.append(f"group {data['group_key']}")
    if data.get("external_url"):
        details.append(f"from {data['external_url']}")
    if data.get("user_agent"):
        details.append(str(data["user_agent"]))
    text = f"received {data.get('status', 'firing')} from {source}"
    if details:
        text += f" ({', '.join(details)})"
    if data.get("duplicate"):
        text += "; a copy already received, not stored again"
    return text


def _context(data: Mapping[str, Any], _: str) -> str:
    parts = [
        f"{value.get('title') or value.get('name')} {_value(value.get('value'), value.get('unit'))}"
        for value in data.get("values") or ()
    ]
    parts += [
        f"{missing.get('name')} unavailable ({missing.get('reason')})"
        for missing in data.get("unavailable") or ()
    ]
    return "cost context: " + ("; ".join(parts) if parts else "none")


def _routed(data: Mapping[str, Any], _: str) -> str:
    route = data.get("route")
    if not route:
        return "no route matched: sent nowhere"
    matchers = list(data.get("matchers") or ())
    text = f"routed by route {route}: "
    text += f"{', '.join(matchers)} matched" if matchers else "matches every alert"
    for when in data.get("when") or ():
        values = dict(when.get("values") or {})
        shown = ", ".join(
            _number(v) if len(values) == 1 else f"{k}={_number(v)}" for k, v in values.items()
        )
        text += f"; when {when.get('condition')}" + (f" ({shown})" if shown else "")
    destinations = list(data.get("destinations") or ())
    if destinations:
        text += f"; to {', '.join(destinations)}"
    if data.get("resolve"):
        text += " (a resolve goes where its firing may have gone)"
    return text


def _dedup(data: Mapping[str, Any], destination: str) -> str:
    verdict = "queued to send" if data.get("sent") else "not sent"
    return f"{destination}: {verdict} — {data.get('reason', '')}"


def _attempt(data: Mapping[str, Any], destination: str) -> str:
    error = str(data.get("error") or "unknown error")
    status = data.get("http_status")
    if status is not None and str(status) not in error:
        error = f"HTTP {status} {error}"
    text = f"{destination}: try {data.get('attempt', '?')} failed: {error}"
    retry_in = data.get("retry_in")
    if retry_in is not None:
        text += f"; next try in {_delay(float(retry_in))}"
        if data.get("retry_after") is not None:
            text += f" (Retry-After {_seconds(data['retry_after'])})"
    elif data.get("recoverable") is False:
        text += "; not tried again (the vendor refused it)"
    return text


def _delivered(data: Mapping[str, Any], destination: str) -> str:
    ref = data.get("ref") or {}
    details = []
    if ref.get("channel"):
        details.append(str(ref["channel"]))
    if ref.get("ts"):
        details.append(f"ts {ref['ts']}")
    if ref.get("dedup_key"):
        details.append(f"dedup_key {ref['dedup_key']}")
    if ref.get("permalink"):
        details.append(str(ref["permalink"]))
    text = f"delivered to {destination}"
    if details:
        text += f" ({', '.join(details)})"
    attempt = data.get("attempt")
    if isinstance(attempt, int) and attempt > 1:
        text += f" on try {attempt}"
    digest = data.get("digest")
    if isinstance(digest, int) and digest > 1:
        text += f", in one message with {digest - 1} other alerts"
    return text


def _dead_letter(data: Mapping[str, Any], destination: str) -> str:
    return (
        f"{destination}: kept as a dead letter after {data.get('attempts', '?')} tries: "
        f"{data.get('error', '')}"
    )


def _replayed(data: Mapping[str, Any], destination: str) -> str:
    return (
        f"{destination}: queued again from dead letter {data.get('dead_letter', '?')}"
        f" by {data.get('by', 'someone')}"
    )


def _silenced(data: Mapping[str, Any], _: str) -> str:
    duration = data.get("duration")
    length = f" for {_duration(duration)}" if duration not in (None, "") else ""
    return (
        f"silenced{length} by {data.get('by', 'someone')} from Slack"
        f" (silence {data.get('silence_id', '?')})"
    )


def _acknowledged(data: Mapping[str, Any], _: str) -> str:
    where = f" in {data['destination']}" if data.get("destination") else ""
    return f"acknowledged{where} by {data.get('by', 'someone')} from Slack"


def _resolved(data: Mapping[str, Any], _: str) -> str:
    text = "resolved"
    if isinstance(data.get("duration"), int | float):
        text += f" after {format_elapsed(float(data['duration']))}"
    cost = data.get("cost")
    if isinstance(cost, int | float):
        text += f"; incident cost {format_value(float(cost), Unit.USD)}"
        if isinstance(data.get("per_hour"), int | float):
            text += f" at {format_value(float(data['per_hour']), Unit.USD_PER_HOUR)}"
    else:
        text += "; incident cost unknown"
    return text


def _value(value: Any, unit: Any) -> str:
    if not isinstance(value, int | float):
        return str(value)
    try:
        return format_value(float(value), Unit(unit))
    except ValueError:
        return f"{_number(value)} {unit}"


def _number(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else str(value)


def _seconds(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def _delay(seconds: float) -> str:
    """A retry's delay as a person reads it: `45 ms`, `4s`, `2m30s` (backoff has jitter:
    its fractions of a second say nothing)."""
    if seconds < 1:
        return f"{max(seconds, 0.0) * 1000:.0f} ms"
    return format_duration(round(seconds))


def _duration(value: Any) -> str:
    if isinstance(value, int | float):
        return format_duration(max(float(value), 0.0))
    return str(value)


_DESCRIBE: dict[EventKind, Callable[[Mapping[str, Any], str], str]] = {
    EventKind.RECEIVED: _received,
    EventKind.CONTEXT: _context,
    EventKind.ROUTED: _routed,
    EventKind.DEDUP: _dedup,
    EventKind.ATTEMPT: _attempt,
    EventKind.DELIVERED: _delivered,
    EventKind.DEAD_LETTER: _dead_letter,
    EventKind.REPLAYED: _replayed,
    EventKind.SILENCED: _silenced,
    EventKind.ACKNOWLEDGED: _acknowledged,
    EventKind.RESOLVED: _resolved,
}
