"""PagerDuty Events API v2: one event per alert, triggered and resolved by a stable dedup_key.

The event is built here; the `pagerduty` package's `EventsApiV2Client` sends it. That client
retries on its own with blocking sleeps; here it sends exactly once and tells us what PagerDuty
answered, because the pipeline owns retries, backoff and rate limits.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
import ssl
import time
from collections.abc import Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx2
import pagerduty
from pagerduty.auth_method import BodyParameterAuthMethod

from receiver.config.secrets import MissingSecretError, Secret, SecretSource, redact
from receiver.context.units import format_context
from receiver.models import Alert, CostContext, Notification, Unit, format_time
from receiver.notify.base import NotifyError, Ref

log = logging.getLogger(__name__)

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"

# PagerDuty: "Events API payloads are limited to 512 KB". Alertmanager's pagerduty.go reads
# that as 512000 bytes of encoded JSON (maxEventSize); so do we.
MAX_EVENT_BYTES = 512_000
# PagerDuty: payload.summary "maximum permitted length ... is 1024 characters"; longer is a 400.
MAX_SUMMARY_CHARS = 1024
# PagerDuty: dedup_key "maximum permitted length ... is 255 characters".
MAX_DEDUP_KEY_CHARS = 255
# PagerDuty documents no limit for source, component, group and class; they come from labels,
# which can be any size, so they get the summary's limit to keep the event small and readable.
MAX_FIELD_CHARS = 1024
# PagerDuty: payload.severity is one of these four.
SEVERITIES = ("critical", "error", "warning", "info")

_CLIENT = "alert-router"
_MASK = "****"
# Conventional spellings of the four levels; anything else gets the configured default.
_SEVERITY_ALIASES = {
    "crit": "critical",
    "fatal": "critical",
    "page": "critical",
    "err": "error",
    "warn": "warning",
    "informational": "info",
    "notice": "info",
}
_SOURCE_LABELS = ("instance", "Hostname", "node", "service")
_COMPONENT_LABELS = ("service", "app")
_GROUP_LABELS = ("namespace", "kubernetes_namespace", "team")
_LINK_ANNOTATIONS = (("runbook_url", "Runbook"), ("dashboard_url", "Dashboard"))
# The annotations kept when custom_details must shrink to the summary.
_SUMMARY_ANNOTATIONS = ("summary", "description")
# Caps for label and annotation values, tried in order until the event fits 512 KB.
_VALUE_CAPS = (None, 16_384, 2_048, 256)
_ERROR_TEXT_CHARS = 300
# What custom_details keeps: everything, the summary annotation and the cost, or nothing.
_Keep = Literal["all", "summary", "none"]
_TAG = re.compile(r"<[^>]*>")


def dedup_key(alert: Alert) -> str:
    """The PagerDuty dedup_key of an alert episode: fingerprint and startsAt.

    Deterministic, so every replica and every restart triggers and resolves the same
    PagerDuty alert; a new episode of the same alert (a new startsAt) opens a new one.
    """
    key = f"{alert.fingerprint}-{int(alert.starts_at.timestamp())}"
    if len(key) > MAX_DEDUP_KEY_CHARS:
        key = hashlib.sha256(key.encode()).hexdigest()
    return key


def severity(labels: Mapping[str, str], default: str) -> str:
    """PagerDuty's severity for an alert's `severity` label; `default` when it names none."""
    value = labels.get("severity", "").strip().lower()
    if value in SEVERITIES:
        return value
    return _SEVERITY_ALIASES.get(value, default)


class PagerDutyNotifier:
    """Sends Alertmanager alerts to one PagerDuty service through the Events API v2."""

    max_batch = 1

    def __init__(
        self,
        name: str,
        routing_key: SecretSource,
        *,
        events_url: str = EVENTS_URL,
        default_severity: str = "warning",
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`events_url` is the full enqueue URL (PAGERDUTY_EVENTS_URL). `ssl_context`, when
        given, is used instead of a new one with the system's CAs (one can serve all
        notifiers: loading the CAs takes tens of milliseconds)."""
        if default_severity not in SEVERITIES:
            raise ValueError(
                f"default_severity must be one of {', '.join(SEVERITIES)}, not {default_severity!r}"
            )
        parts = urlsplit(events_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"events_url must be an http(s) URL, not {_display_url(events_url)}")
        if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
            log.warning(
                "PagerDuty events URL %s is plain http: routing keys travel unencrypted",
                _display_url(events_url),
            )
        self.name = name
        self.default_severity = default_severity
        self._routing_key = routing_key
        self._url = events_url
        self._client = _events_client(events_url, timeout, ssl_context)

    async def notify(self, batch: Sequence[Notification]) -> Sequence[Ref | None]:
        refs: list[Ref | None] = []
        for notification in batch:
            # The client blocks; keep it off the event loop.
            refs.append(await asyncio.to_thread(self._send, notification))
        return refs

    def render(self, batch: Sequence[Notification]) -> list[dict[str, Any]]:
        return [self._event(notification, _MASK) for notification in batch]

    def close(self) -> None:
        self._client.close()

    def _send(self, notification: Notification) -> Ref:
        try:
            key = self._routing_key()
        except MissingSecretError as exc:
            # A mounted Secret can be briefly absent while Kubernetes swaps it; try again.
            raise NotifyError(str(exc), recoverable=True) from None
        event = self._event(notification, key.reveal())
        started = time.monotonic()
        try:
            response = self._client.post(self._url, json=event)
        except pagerduty.Error as exc:
            if exc.response is not None:
                # The client refuses redirects: PagerDuty's Events API never issues one.
                raise _http_error(exc.response, key) from None
            raise self._network_error(exc.__cause__ or exc, started, key) from None
        except httpx2.HTTPError as exc:
            # E.g. a response body that cannot be decoded: the event may or may not have
            # landed; sending it again is safe because PagerDuty dedups on dedup_key.
            raise self._network_error(exc, started, key) from None
        if not response.is_success:
            raise _http_error(response, key)
        sent_key = event["dedup_key"]
        body = _json_or_none(response)
        if isinstance(body, dict) and isinstance(body.get("dedup_key"), str):
            sent_key = body["dedup_key"]
        log.debug(
            "pagerduty %s sent: destination=%s dedup_key=%s status=%d",
            event["event_action"],
            self.name,
            sent_key,
            response.status_code,
        )
        return {"dedup_key": sent_key}

    def _network_error(self, exc: BaseException, started: float, key: Secret) -> NotifyError:
        detail = redact(str(exc), key) or "no detail"
        elapsed = time.monotonic() - started
        return NotifyError(
            f"cannot reach PagerDuty at {_display_url(self._url)} after {elapsed:.1f}s: "
            f"{type(exc).__name__}: {detail}",
            recoverable=True,
        )

    def _event(self, notification: Notification, routing_key: str) -> dict[str, Any]:
        alert = notification.alert
        if not alert.firing:
            # PagerDuty: a resolve needs only routing_key, event_action and dedup_key.
            return {
                "routing_key": routing_key,
                "event_action": "resolve",
                "dedup_key": dedup_key(alert),
            }
        return _fit(_Event(notification, routing_key, self.default_severity), self.name)


class _Event:
    """The parts of one trigger event, assembled at a given level of shrinking."""

    def __init__(self, notification: Notification, routing_key: str, default: str) -> None:
        self.notification = notification
        self.alert = notification.alert
        self.routing_key = routing_key
        self.default_severity = default

    def build(self, cap: int | None, keep: _Keep) -> dict[str, Any]:
        """The event, with label and annotation values cut to `cap` characters."""
        alert = self.alert
        labels = alert.labels
        payload: dict[str, Any] = {
            "summary": _summary(alert, self.notification.context),
            "source": _clip(_first(labels, _SOURCE_LABELS) or _CLIENT, MAX_FIELD_CHARS),
            "severity": severity(labels, self.default_severity),
            "timestamp": format_time(alert.starts_at),
            "class": _clip(alert.name, MAX_FIELD_CHARS),
        }
        component = _first(labels, _COMPONENT_LABELS)
        if component:
            payload["component"] = _clip(component, MAX_FIELD_CHARS)
        group = _first(labels, _GROUP_LABELS)
        if group:
            payload["group"] = _clip(group, MAX_FIELD_CHARS)
        payload["custom_details"] = self._details(cap, keep)
        event: dict[str, Any] = {
            "routing_key": self.routing_key,
            "event_action": "trigger",
            "dedup_key": dedup_key(alert),
            "payload": payload,
            "client": _CLIENT,
        }
        if keep != "none":
            links = _links(alert)
            if links:
                event["links"] = links
            if alert.external_url:
                event["client_url"] = alert.external_url
        return event

    def _details(self, cap: int | None, keep: _Keep) -> dict[str, Any]:
        if keep == "none":
            return {
                "error": "Details were removed because the event exceeded PagerDuty's "
                f"limit of {MAX_EVENT_BYTES} bytes; see the alert in Alertmanager."
            }
        alert = self.alert
        notification = self.notification
        details: dict[str, Any] = {}
        if keep == "all":
            details["labels"] = _capped(alert.labels, cap)
            details["annotations"] = _capped(alert.annotations, cap)
        else:
            details["annotations"] = _capped(
                {k: v for k, v in alert.annotations.items() if k in _SUMMARY_ANNOTATIONS}, cap
            )
        details.update(_context_details(notification.context, cap))
        details["notification_reason"] = str(notification.reason)
        details["route"] = notification.route
        details["fingerprint"] = alert.fingerprint
        details["starts_at"] = format_time(alert.starts_at)
        limit = f"to keep the event within PagerDuty's limit of {MAX_EVENT_BYTES} bytes"
        if keep == "summary":
            details["truncated"] = f"labels and other annotations were removed {limit}"
        elif cap is not None:
            details["truncated"] = f"values over {cap} characters were cut {limit}"
        return details


def _fit(event: _Event, destination: str) -> dict[str, Any]:
    """The largest form of `event` within PagerDuty's 512 KB: shrink custom_details first."""
    full_size = 0
    attempts: list[tuple[int | None, _Keep]] = [(cap, "all") for cap in _VALUE_CAPS]
    attempts += [(256, "summary"), (None, "none")]
    for cap, keep in attempts:
        built = event.build(cap, keep)
        size = _size(built)
        if size <= MAX_EVENT_BYTES:
            if full_size:
                log.warning(
                    "pagerduty event shrunk to fit %d bytes: destination=%s dedup_key=%s "
                    "size=%d shrunk=%d",
                    MAX_EVENT_BYTES,
                    destination,
                    built["dedup_key"],
                    full_size,
                    size,
                )
            return built
        full_size = full_size or size
    # Unreachable: with details removed, every field left is capped far below the limit.
    return built


def _size(event: Mapping[str, Any]) -> int:
    # Encoded as httpx2 encodes the request body, so the size is the one PagerDuty sees.
    return len(json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode())


def _summary(alert: Alert, context: CostContext) -> str:
    """Alert name, summary annotation and the key cost figure within 1024 characters.

    The cost figure comes before the free text so that truncation never cuts it off.
    """
    head = alert.name
    key = _key_cost(context)
    if key:
        head = f"{head} [{key}]"
    text = alert.annotations.get("summary") or alert.annotations.get("description") or ""
    text = " ".join(text.split())
    summary = f"{head}: {text}" if text else head
    return _clip(summary, MAX_SUMMARY_CHARS)


def _key_cost(context: CostContext) -> str:
    """The cost figure worth a glance on a phone: the first $/h value, else the first value."""
    if not context.values:
        return ""
    chosen = next((v for v in context.values if v.unit is Unit.USD_PER_HOUR), context.values[0])
    return f"{chosen.title} {format_context(chosen)}"


def _context_details(context: CostContext, cap: int | None) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if context.values:
        details["cost_context"] = {_clip(v.title, cap): format_context(v) for v in context.values}
        # JSON has no NaN or infinity (httpx2 refuses to encode them): those become null.
        details["cost_values"] = {
            v.name: v.value if math.isfinite(v.value) else None for v in context.values
        }
    if context.unavailable:
        details["cost_context_unavailable"] = {
            name: _clip(reason, cap) for name, reason in context.unavailable
        }
    return details


def _links(alert: Alert) -> list[dict[str, str]]:
    candidates = [(alert.generator_url, "Prometheus graph")]
    candidates += [(alert.annotations.get(name, ""), text) for name, text in _LINK_ANNOTATIONS]
    # PagerDuty: links[].href is a URL; other annotation text stays in custom_details.
    return [
        {"href": href, "text": text}
        for href, text in candidates
        if href.startswith(("https://", "http://"))
    ]


def _first(labels: Mapping[str, str], names: Sequence[str]) -> str:
    for name in names:
        value = labels.get(name, "")
        if value:
            return value
    return ""


def _capped(values: Mapping[str, str], cap: int | None) -> dict[str, str]:
    return {key: _clip(value, cap) for key, value in values.items()}


def _clip(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def _http_error(response: httpx2.Response, key: Secret) -> NotifyError:
    """NotifyError for a non-2xx answer, after PagerDuty's table of response codes:
    400 is final, 429 and 5xx are worth another try later."""
    status = response.status_code
    body = _json_or_none(response)
    parts = [f"PagerDuty answered HTTP {status}"]
    if isinstance(body, dict):
        if body.get("status"):
            parts[0] += f" ({body['status']})"
        if body.get("message"):
            parts.append(str(body["message"]))
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            parts.append("; ".join(str(error) for error in errors))
    else:
        # A load balancer's error page: its text without the markup.
        text = " ".join(_TAG.sub(" ", response.text).split())
        if text:
            parts.append(_clip(text, _ERROR_TEXT_CHARS))
    if 300 <= status < 400:
        parts.append("the Events API does not redirect; check PAGERDUTY_EVENTS_URL")
    # 408 is a proxy's timeout: nothing is wrong with the event.
    recoverable = status in (408, 429) or status >= 500
    retry_after = _retry_after(response.headers.get("retry-after")) if recoverable else None
    return NotifyError(
        redact(": ".join(parts), key), recoverable=recoverable, retry_after=retry_after
    )


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (RFC 9110: delay-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def _json_or_none(response: httpx2.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _display_url(url: str) -> str:
    """`url` without credentials, query or fragment, safe for logs and errors."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class _EventBodyAuth(BodyParameterAuthMethod):
    """Adds nothing: the routing key is part of the event we build, read from the
    SecretSource at every send, so the client never holds a (possibly stale) key."""

    def __init__(self) -> None:
        # All AuthMethod.__init__ does (it is untyped, hence not called).
        self.secret = ""

    @property
    def auth_param(self) -> dict[str, str]:
        return {}


class _EventsClient(pagerduty.EventsApiV2Client):
    """EventsApiV2Client that sends once and accepts a plain-http URL (a local PagerDuty
    stand-in, or a proxy); its own setter insists on https."""

    @property
    def url(self) -> str:
        return str(self._url)

    @url.setter
    def url(self, value: str) -> None:
        self._url = value


def _events_client(url: str, timeout: float, ssl_context: ssl.SSLContext | None) -> _EventsClient:
    client = _EventsClient("", base_url=url, verify=ssl_context or True)
    client.auth_method = _EventBodyAuth()
    # The class declares an int, but the value goes to httpx2 as its timeout, a float.
    client.timeout = timeout  # type: ignore[assignment]
    # No retries inside the client: a network error raises after the first attempt ...
    client.max_network_attempts = 0
    # ... and each error status is returned at once. Statuses without a `retry` entry are
    # returned as they are, except 429 (retried forever) and 401 (raised); those two get an
    # entry, and a negative max_http_attempts ends their retry loop before the first sleep.
    client.retry = {429: 1, 401: 1}
    client.max_http_attempts = -1
    client.sleep_timer = 0.0
    # With the settings above the client's only log line is a misleading "exceeded maximum
    # number of attempts" error for 429 and 401; the pipeline logs every failure itself.
    client.log = _quiet_logger()
    return client


def _quiet_logger() -> logging.Logger:
    logger = logging.Logger("pagerduty.events_client")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger
