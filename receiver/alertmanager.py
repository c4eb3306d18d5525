"""The few calls of Alertmanager's API v2 the Slack silence button needs.

Alertmanager's own errors are put in words a person reading Slack understands
(`AlertmanagerError`); its URL appears in them without credentials, query or fragment.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from receiver.config.secrets import redact_url
from receiver.matchers import MatchType, format_matcher
from receiver.models import format_time

# Alertmanager's error text in our messages: enough to name the problem.
_ANSWER_TEXT = 200


class AlertmanagerError(Exception):
    """Alertmanager could not be asked, or refused; the text names it and says why."""


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    starts: datetime
    ends: datetime
    matchers: list[dict[str, Any]]


class AlertmanagerClient:
    """Alerts and silences over Alertmanager's API v2, each call bounded by `timeout`."""

    def __init__(self, http: httpx.AsyncClient, url: str, timeout: float) -> None:
        self._http = http
        self._base = url.rstrip("/")
        self._timeout = timeout

    async def alert_labels(self, fingerprint: str, alertname: str) -> Mapping[str, str] | None:
        """The labels of the alert with `fingerprint` that Alertmanager holds, or None."""
        params = {"filter": _name_filter(alertname)} if alertname else {}
        found = await self._call("GET", "/api/v2/alerts", params=params)
        for alert in found if isinstance(found, list) else []:
            labels = alert.get("labels") if isinstance(alert, dict) else None
            if alert.get("fingerprint") == fingerprint and isinstance(labels, dict):
                return {str(k): str(v) for k, v in labels.items()}
        return None

    async def find(self, labels: Mapping[str, str], marker: str) -> Silence | None:
        """An active (or pending) silence with exactly `labels` as equality matchers and
        `marker` in its comment."""
        params = {"filter": _name_filter(labels["alertname"])} if "alertname" in labels else {}
        found = await self._call("GET", "/api/v2/silences", params=params)
        wanted = _matcher_set(equality_matchers(labels))
        for item in found if isinstance(found, list) else []:
            if not isinstance(item, dict):
                continue
            state = (item.get("status") or {}).get("state")
            if state not in ("active", "pending") or marker not in str(item.get("comment")):
                continue
            matchers = item.get("matchers")
            if not isinstance(matchers, list) or _matcher_set(matchers) != wanted:
                continue
            with contextlib.suppress(KeyError, TypeError, ValueError):
                return Silence(
                    id=str(item["id"]),
                    starts=_time(item["startsAt"]),
                    ends=_time(item["endsAt"]),
                    matchers=matchers,
                )
        return None

    async def create(
        self,
        labels: Mapping[str, str],
        starts: datetime,
        ends: datetime,
        created_by: str,
        comment: str,
    ) -> Silence:
        """A new silence matching exactly `labels`."""
        matchers = equality_matchers(labels)
        body = {
            "matchers": matchers,
            "startsAt": format_time(starts),
            "endsAt": format_time(ends),
            "createdBy": created_by,
            "comment": comment,
        }
        return Silence(await self._post(body), starts, ends, matchers)

    async def extend(
        self, silence: Silence, ends: datetime, created_by: str, comment: str
    ) -> Silence:
        """A later end for an active silence: Alertmanager updates it in place when the
        matchers and start are unchanged, and keeps its ID."""
        body = {
            "id": silence.id,
            "matchers": silence.matchers,
            "startsAt": format_time(silence.starts),
            "endsAt": format_time(ends),
            "createdBy": created_by,
            "comment": comment,
        }
        return Silence(await self._post(body), silence.starts, ends, silence.matchers)

    async def _post(self, body: Mapping[str, Any]) -> str:
        answer = await self._call("POST", "/api/v2/silences", json=body)
        silence_id = answer.get("silenceID") if isinstance(answer, dict) else None
        if not isinstance(silence_id, str) or not silence_id:
            raise AlertmanagerError("Alertmanager created no silence (its answer had no silenceID)")
        return silence_id

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, Any] | None = None,
    ) -> Any:
        where = f"Alertmanager at {redact_url(self._base)}"
        try:
            response = await self._http.request(
                method, self._base + path, params=params, json=json, timeout=self._timeout
            )
        except httpx.TimeoutException:
            raise AlertmanagerError(f"{where} did not answer within {self._timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise AlertmanagerError(f"{where} cannot be reached ({type(exc).__name__})") from None
        if not response.is_success:
            text = " ".join(response.text.split())[:_ANSWER_TEXT]
            raise AlertmanagerError(f"{where} answered HTTP {response.status_code} {text}".rstrip())
        try:
            return response.json()
        except ValueError:
            raise AlertmanagerError(f"{where} answered something other than JSON") from None


def equality_matchers(labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """Equality matchers for every label: the silence covers this alert and no other."""
    return [
        {"name": name, "value": value, "isRegex": False, "isEqual": True}
        for name, value in sorted(labels.items())
    ]


def _matcher_set(matchers: Sequence[Any]) -> frozenset[tuple[str, str, bool, bool]]:
    found = set()
    for m in matchers:
        if isinstance(m, dict):
            # Alertmanager before 0.22 has no isEqual: every matcher was an equality.
            found.add(
                (
                    str(m.get("name")),
                    str(m.get("value")),
                    bool(m.get("isRegex")),
                    bool(m.get("isEqual", True)),
                )
            )
    return frozenset(found)


def _name_filter(alertname: str) -> str:
    """An Alertmanager `filter` matcher for an alert name."""
    return format_matcher("alertname", MatchType.EQUAL, alertname)


def _time(value: Any) -> datetime:
    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError("time without a timezone")
    return parsed.astimezone(UTC)
