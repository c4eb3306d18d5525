"""The webhook parser: Alertmanager's webhook (version 4) or Grafana Alerting's (version 1,
`receiver.ingest.grafana`) body into accepted Alerts.

Two readers of one alert, side by side: `from_raw`, the fast path that takes the usual valid
shape without pydantic, and `WebhookAlert`, the pydantic model that decides everything else
and names the problem. `parse_webhook` runs the fast path first and the model only when the
fast path is unsure; a property test holds the two to the same answers.

The body is decoded by pydantic's JSON reader (jiter), which builds the Python objects
straight from the bytes, one pass, no intermediate document: a webhook at the body limit
peaks at about 1.6 times its size. orjson first builds a yyjson document of the whole body,
about 15 times its size at the peak (tests/ingest/test_large_groups.py measures both).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import from_json

from receiver.ingest.grafana import GRAFANA_VERSION, grafana_fields, missing_grafana_keys
from receiver.models import Alert, labels_fingerprint

# Alertmanager's webhook payload version; a body without `version` is read as this one.
SUPPORTED_VERSION = "4"
# Alertmanager writes the zero time for "no end": 0001-01-01T00:00:00Z.
_ZERO_YEAR = 1
# RFC 3339 as Alertmanager writes it (Go's RFC3339Nano): the timestamps `from_raw` parses
# itself. Anything else is left to pydantic.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})")
_ABSENT = object()


class Rejected(TypedDict):
    """An alert of the webhook that was not accepted: its position and why."""

    index: int
    reason: str


@dataclass(frozen=True, slots=True)
class Webhook:
    """A parsed webhook: the alerts to store, the ones refused, and who sent it."""

    alerts: list[Alert]
    rejected: list[Rejected]
    # "alertmanager" or "grafana" (receiver.models.SOURCES): one webhook, one source.
    source: str = "alertmanager"


class InvalidWebhook(Exception):
    """The body as a whole is not a webhook (answer 400 with `message` and `details`)."""

    def __init__(self, message: str, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: list[Any] = details or []


class WebhookAlert(BaseModel):
    """One alert of an Alertmanager webhook (version 4). Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = ""

    @field_validator("labels")
    @classmethod
    def _has_name(cls, labels: dict[str, str]) -> dict[str, str]:
        if not labels.get("alertname"):
            raise ValueError("labels must include a non-empty alertname")
        return labels

    @field_validator("startsAt", "endsAt")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamp needs a timezone (RFC 3339)")
        try:
            return value.astimezone(UTC)
        except OverflowError:
            # e.g. 9999-12-31T23:00:00-05:00: valid RFC 3339, past what UTC can hold.
            raise ValueError("timestamp out of range") from None


def validation_reason(error: ValidationError) -> str:
    """A short, single-line reason from a pydantic error, naming the field."""
    parts = []
    for item in error.errors()[:3]:
        where = ".".join(str(p) for p in item["loc"]) or "alert"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def parse_webhook(body: bytes, user_agent: str = "") -> Webhook:
    """The alerts of a webhook body, each accepted or rejected with a reason; each alert
    keeps the sender's `user_agent`.

    Raises InvalidWebhook when the body itself is wrong: not JSON, not an object, another
    version, no `alerts` list. Version "1" is Grafana's webhook: each alert then also
    keeps what Grafana adds (`Alert.grafana`).
    """
    try:
        payload = decode_json(body)
    except ValueError as exc:
        raise InvalidWebhook("body is not valid JSON", [str(exc)]) from None
    if not isinstance(payload, dict):
        raise InvalidWebhook("body must be a JSON object (Alertmanager webhook)")
    version = payload.get("version", SUPPORTED_VERSION)
    grafana = version == GRAFANA_VERSION
    if grafana:
        missing = missing_grafana_keys(payload)
        if missing:
            raise InvalidWebhook(
                "version 1 body is not Grafana Alerting's webhook",
                [f"missing {', '.join(missing)}"],
            )
    elif version != SUPPORTED_VERSION:
        raise InvalidWebhook(
            f"unsupported webhook version {version!r}",
            [
                f"alert-router reads Alertmanager webhook version {SUPPORTED_VERSION} "
                f"and Grafana Alerting webhook version {GRAFANA_VERSION}"
            ],
        )
    raw_alerts = payload.get("alerts")
    if not isinstance(raw_alerts, list):
        raise InvalidWebhook("body has no 'alerts' list")
    alerts: list[Alert] = []
    rejected: list[Rejected] = []
    for index, raw in enumerate(raw_alerts):
        if not isinstance(raw, dict):
            rejected.append({"index": index, "reason": "alert must be a JSON object"})
            continue
        # Most alerts take the fast path; pydantic checks the others and names problems.
        alert = from_raw(raw, payload, user_agent)
        if alert is None:
            try:
                alert = from_webhook(WebhookAlert.model_validate(raw), payload, user_agent)
            except ValidationError as exc:
                rejected.append({"index": index, "reason": validation_reason(exc)})
                continue
        if grafana:
            alert = replace(alert, grafana=grafana_fields(raw, payload))
        alerts.append(alert)
    return Webhook(alerts, rejected, "grafana" if grafana else "alertmanager")


def decode_json(body: bytes) -> Any:
    """The JSON value of `body`; ValueError names the problem when it is not JSON.

    NaN and Infinity are refused (not JSON), and so is nesting past 200 levels
    (Alertmanager's webhook has 4). Integers past 64 bits are read (orjson refuses them):
    Alertmanager writes none, and an alert field holding one is rejected with the alert.
    Strings repeated across alerts (label names, most values) are read once and shared,
    which is most of what keeps a large group small in memory.
    """
    return from_json(body, allow_inf_nan=False, cache_strings=True)


def from_webhook(alert: WebhookAlert, envelope: Mapping[str, Any], user_agent: str = "") -> Alert:
    """The Alert of a validated webhook alert and the webhook around it."""
    ends = alert.endsAt
    if ends is not None and ends.year == _ZERO_YEAR:
        ends = None
    return Alert(
        fingerprint=alert.fingerprint or labels_fingerprint(alert.labels),
        status=alert.status,
        labels=alert.labels,
        annotations=alert.annotations,
        starts_at=alert.startsAt,
        ends_at=ends,
        generator_url=alert.generatorURL,
        external_url=_text(envelope.get("externalURL")),
        receiver=_text(envelope.get("receiver")),
        group_key=_text(envelope.get("groupKey")),
        user_agent=user_agent,
    )


def from_raw(
    raw: Mapping[str, Any], envelope: Mapping[str, Any], user_agent: str = ""
) -> Alert | None:
    """The alert of a webhook, without pydantic, when it has the usual valid shape.

    The ingest fast path: every alert this accepts, `WebhookAlert` accepts too and turns
    into the same Alert. None means "not sure": validate with `WebhookAlert`, which
    accepts it or names the problem.
    """
    status = raw.get("status")
    labels = raw.get("labels")
    if (status != "firing" and status != "resolved") or type(labels) is not dict:
        return None
    if not labels.get("alertname") or not _all_str(labels):
        return None
    annotations = raw.get("annotations", _ABSENT)
    if annotations is _ABSENT:
        annotations = {}
    elif type(annotations) is not dict or not _all_str(annotations):
        return None
    starts = _fast_time(raw.get("startsAt"))
    if starts is None:
        return None
    ends_raw = raw.get("endsAt")
    ends = None if ends_raw is None else _fast_time(ends_raw)
    if ends_raw is not None and ends is None:
        return None
    generator = raw.get("generatorURL", "")
    fingerprint = raw.get("fingerprint", "")
    if type(generator) is not str or type(fingerprint) is not str:
        return None
    if ends is not None and ends.year == _ZERO_YEAR:
        ends = None
    return Alert(
        fingerprint=fingerprint or labels_fingerprint(labels),
        status=status,
        labels=labels,
        annotations=annotations,
        starts_at=starts,
        ends_at=ends,
        generator_url=generator,
        external_url=_text(envelope.get("externalURL")),
        receiver=_text(envelope.get("receiver")),
        group_key=_text(envelope.get("groupKey")),
        user_agent=user_agent,
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _all_str(values: dict[Any, Any]) -> bool:
    return all(type(value) is str for value in values.values())


def _fast_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp in UTC, as WebhookAlert would read it; None when unsure."""
    if type(value) is not str or _RFC3339.fullmatch(value) is None:
        return None
    try:
        # Like pydantic, fractions past microseconds are cut, not rounded.
        return datetime.fromisoformat(value).astimezone(UTC)
    except (ValueError, OverflowError):
        return None
