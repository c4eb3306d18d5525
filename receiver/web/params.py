"""The alert list's query parameters, read one way for the API and the page:
`filter` (Alertmanager matchers), `status`, `destination`, `since` and `limit`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from receiver.config.durations import parse_duration
from receiver.history.query import parse_filter
from receiver.matchers import Matcher

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
STATUSES = ("firing", "resolved")


@dataclass(frozen=True)
class AlertQuery:
    filter: str = ""
    matchers: tuple[Matcher, ...] = ()
    status: str | None = None
    destination: str | None = None
    since_text: str = ""
    since: float = 0.0  # Unix time; 0: all the history kept
    limit: int = DEFAULT_LIMIT
    problems: list[str] = field(default_factory=list)


def alert_query(params: Mapping[str, str], now: float) -> AlertQuery:
    """The query the parameters ask for; each unusable parameter is named in `problems`
    (the API answers 400 with them, the page shows them above an empty list)."""
    problems: list[str] = []
    text = params.get("filter", "").strip()
    matchers: tuple[Matcher, ...] = ()
    if text:
        try:
            matchers = tuple(parse_filter(text))
        except ValueError as exc:
            problems.append(f"filter: {exc}")
    status = params.get("status", "").strip() or None
    if status is not None and status not in STATUSES:
        problems.append(f"status: {status!r} is neither firing nor resolved")
    destination = params.get("destination", "").strip() or None
    since_text = params.get("since", "").strip()
    since = 0.0
    if since_text:
        try:
            since = parse_since(since_text, now)
        except ValueError as exc:
            problems.append(f"since: {exc}")
    limit = DEFAULT_LIMIT
    limit_text = params.get("limit", "").strip()
    if limit_text:
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
            problems.append(f"limit: {limit_text!r} is not a number from 1 to {MAX_LIMIT}")
        else:
            limit = int(limit_text)
    return AlertQuery(text, matchers, status, destination, since_text, since, limit, problems)


def parse_since(text: str, now: float) -> float:
    """A duration back from now (`6h`) or an RFC 3339 time (`2024-05-01T12:00:00Z`)."""
    if text[:1].isdigit() and "-" not in text:
        return now - parse_duration(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (6h) nor an RFC 3339 time (2024-05-01T12:00:00Z)"
        ) from None
    if when.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone: end it with Z or an offset")
    return when.timestamp()
