"""The alert as the pipeline carries it (receiver.ingest.parse reads it from the webhook)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


def labels_fingerprint(labels: Mapping[str, str]) -> str:
    """A stable fingerprint for an alert that came without one."""
    digest = hashlib.sha256()
    for key in sorted(labels):
        digest.update(key.encode())
        digest.update(b"\xff")
        digest.update(labels[key].encode())
        digest.update(b"\xff")
    return digest.hexdigest()[:16]


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, the form Alertmanager writes."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # Formatted by hand, at a fraction of strftime's cost: this runs several times per
    # alert. The year is padded to four digits (RFC 3339), so it parses back.
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:{value.minute:02d}:"
        f"{value.second:02d}.{value.microsecond // 1000:03d}Z"
    )


def _is_formatted(text: str) -> bool:
    """Whether `text` has format_time's shape (YYYY-MM-DDTHH:MM:SS.mmmZ)."""
    return len(text) == 24 and text[19] == "." and text[23] == "Z" and text[10] == "T"


def episode_key(fingerprint: str, starts_at: datetime) -> str:
    """The key of one alert episode (one firing-to-resolve life): the ledger's, the Slack
    buttons' and PagerDuty's dedup_key are all derived from it."""
    return _episode(fingerprint, format_time(starts_at))


def _episode(fingerprint: str, started: str) -> str:
    """The episode key from the start as `format_time` wrote it (`Alert.started`)."""
    return f"{fingerprint}@{started}"


SOURCES = ("alertmanager", "grafana")


@dataclass(frozen=True, slots=True)
class GrafanaFields:
    """What Grafana Alerting's webhook (version "1") sends beyond Alertmanager's fields."""

    # The query values that fired the alert, by refId: the only place either source sends
    # the number itself ("A" -> 61.5).
    values: Mapping[str, float] = field(default_factory=dict)
    value_string: str = ""
    dashboard_url: str = ""
    panel_url: str = ""
    silence_url: str = ""
    image_url: str = ""
    org_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "values": dict(self.values),
            "valueString": self.value_string,
            "dashboardURL": self.dashboard_url,
            "panelURL": self.panel_url,
            "silenceURL": self.silence_url,
            "imageURL": self.image_url,
            "orgId": self.org_id,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GrafanaFields:
        org = data.get("orgId")
        return cls(
            values={str(k): float(v) for k, v in (data.get("values") or {}).items()},
            value_string=data.get("valueString", ""),
            dashboard_url=data.get("dashboardURL", ""),
            panel_url=data.get("panelURL", ""),
            silence_url=data.get("silenceURL", ""),
            image_url=data.get("imageURL", ""),
            org_id=int(org) if org is not None else None,
        )


@dataclass(frozen=True, slots=True)
class Alert:
    """An accepted alert together with the fields of its webhook that notifiers need."""

    fingerprint: str
    status: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime | None = None
    generator_url: str = ""
    external_url: str = ""
    receiver: str = ""
    group_key: str = ""
    # Set for an alert that came from Grafana Alerting; None for Alertmanager's.
    grafana: GrafanaFields | None = None
    # The sender's User-Agent (its version), for the history.
    user_agent: str = ""
    # `starts_at` as format_time writes it, made on first use: the episode key, the stored
    # row and several notifications need it, and formatting it is not free.
    _started: str = field(default="", init=False, repr=False, compare=False)

    @property
    def source(self) -> str:
        """Where the alert came from: "alertmanager" or "grafana" (one of SOURCES)."""
        return "alertmanager" if self.grafana is None else "grafana"

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def firing(self) -> bool:
        return self.status == "firing"

    @property
    def started(self) -> str:
        """`starts_at` in RFC 3339, as `format_time` writes it."""
        text = self._started
        if not text:
            text = format_time(self.starts_at)
            object.__setattr__(self, "_started", text)
        return text

    @property
    def episode(self) -> str:
        """Fingerprint + startsAt: one firing-to-resolve life of an alert (`episode_key`)."""
        return _episode(self.fingerprint, self.started)

    def to_json(self) -> dict[str, Any]:
        data = {
            "fingerprint": self.fingerprint,
            "status": self.status,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": self.started,
            "endsAt": format_time(self.ends_at) if self.ends_at else None,
            "generatorURL": self.generator_url,
            "externalURL": self.external_url,
            "receiver": self.receiver,
            "groupKey": self.group_key,
        }
        if self.grafana is not None:
            data["grafana"] = self.grafana.to_json()
        if self.user_agent:
            data["userAgent"] = self.user_agent
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Alert:
        ends = data.get("endsAt")
        grafana = data.get("grafana")
        started = data["startsAt"]
        alert = cls(
            fingerprint=data["fingerprint"],
            status=data["status"],
            labels=dict(data["labels"]),
            annotations=dict(data.get("annotations") or {}),
            starts_at=datetime.fromisoformat(started),
            ends_at=datetime.fromisoformat(ends) if ends else None,
            generator_url=data.get("generatorURL", ""),
            external_url=data.get("externalURL", ""),
            receiver=data.get("receiver", ""),
            group_key=data.get("groupKey", ""),
            grafana=GrafanaFields.from_json(grafana) if grafana is not None else None,
            user_agent=data.get("userAgent", ""),
        )
        if _is_formatted(started):
            # Written by to_json: already the text format_time makes.
            object.__setattr__(alert, "_started", started)
        return alert


class Unit(StrEnum):
    """How a cost-context number is formatted."""

    USD = "usd"
    USD_PER_HOUR = "usd_per_hour"
    PERCENT = "percent"
    RATIO = "ratio"
    COUNT = "count"
    TIMESTAMP = "timestamp"


@dataclass(frozen=True, slots=True)
class ContextValue:
    """One number of cost context for an alert, e.g. cost_per_hour = 61.5 USD/h."""

    name: str
    title: str
    value: float
    unit: Unit


@dataclass(frozen=True, slots=True)
class CostContext:
    """The cost context of one alert: the values found, and why the others are missing."""

    values: tuple[ContextValue, ...] = ()
    unavailable: tuple[tuple[str, str], ...] = ()

    def get(self, name: str) -> float | None:
        for item in self.values:
            if item.name == name:
                return item.value
        return None

    def numbers(self) -> dict[str, float]:
        return {item.name: item.value for item in self.values}

    def to_json(self) -> dict[str, Any]:
        return {
            "values": [[v.name, v.title, v.value, v.unit.value] for v in self.values],
            "unavailable": [list(pair) for pair in self.unavailable],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> CostContext:
        if not data:
            return cls()
        return cls(
            values=tuple(
                ContextValue(name, title, float(value), Unit(unit))
                for name, title, value, unit in data.get("values", [])
            ),
            unavailable=tuple((str(a), str(b)) for a, b in data.get("unavailable", [])),
        )


class ContextFailure(StrEnum):
    """Why a cost-context value is missing from an alert (a label of
    `alert_router_context_unavailable_total`)."""

    UNREACHABLE = "prometheus_unreachable"
    TIMEOUT = "timeout"
    QUERY_ERROR = "query_error"
    NO_DATA = "no_data"
    NOT_A_NUMBER = "not_a_number"


class DedupReason(StrEnum):
    """Why a notification was sent or suppressed (Alertmanager's DedupStage reasons)."""

    FIRST = "first_notification"
    REPEAT = "repeat_interval_elapsed"
    RESOLVED = "resolved"
    ALREADY_NOTIFIED = "already_notified"
    ALREADY_RESOLVED = "already_resolved"
    NOT_NOTIFIED = "firing_not_notified"
    SEND_RESOLVED_OFF = "send_resolved_disabled"
    PENDING = "already_queued"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class Notification:
    """What one destination is asked to deliver about one alert."""

    alert: Alert
    destination: str
    route: str
    reason: DedupReason
    context: CostContext = field(default_factory=CostContext)
    # What the destination answered for this episode's firing notice (Slack: channel, ts),
    # so that a resolve can edit the original message.
    ref: Mapping[str, str] | None = None
