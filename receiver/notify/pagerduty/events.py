"""PagerDuty Events API v2 events, built by pure functions: trigger, acknowledge, resolve.

One event per alert. Every event of an alert episode carries the same `dedup_key`, so a
resolve (or an acknowledge from Slack) reaches the PagerDuty alert its trigger opened.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from receiver.context.units import format_context
from receiver.models import Alert, CostContext, Notification, Unit
from receiver.notify.grafana import grafana_links, query_numbers

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
# PagerDuty: event_action is one of trigger, acknowledge, resolve.
Action = Literal["trigger", "acknowledge", "resolve"]

# PagerDuty shows `client` as the name of the monitoring tool that sent the event.
CLIENT = "alert-router"
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
# What custom_details keeps: everything, the summary annotation and the cost, or nothing.
_Keep = Literal["all", "summary", "none"]


@dataclass(frozen=True, slots=True)
class Fitted:
    """A trigger event within MAX_EVENT_BYTES, and how large it was before shrinking."""

    event: dict[str, Any]
    size: int
    full_size: int

    @property
    def shrunk(self) -> bool:
        return self.size < self.full_size


def dedup_key(alert: Alert) -> str:
    """The PagerDuty dedup_key of an alert episode: fingerprint and startsAt.

    Deterministic, so every replica and every restart triggers and resolves the same
    PagerDuty alert; a new episode of the same alert (a new startsAt) opens a new one.
    The spelling is kept as it is (not `models.episode_key`) because PagerDuty holds these
    keys: another spelling would leave the alerts opened before an upgrade unresolvable.
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


def event_size(event: Mapping[str, Any]) -> int:
    """The size of `event` as sent: encoded as httpx2 encodes a `json=` body."""
    return len(json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode())


def resolve_event(alert: Alert, routing_key: str) -> dict[str, Any]:
    """PagerDuty: a resolve needs only routing_key, event_action and dedup_key."""
    return _bare_event("resolve", alert, routing_key)


def acknowledge_event(alert: Alert, routing_key: str) -> dict[str, Any]:
    """PagerDuty: an acknowledge needs only routing_key, event_action and dedup_key."""
    return _bare_event("acknowledge", alert, routing_key)


def trigger_event(notification: Notification, routing_key: str, default_severity: str) -> Fitted:
    """The largest form of the trigger event within PagerDuty's 512 KB.

    custom_details shrinks first: label and annotation values are cut shorter and shorter,
    then only the summary annotations and the cost are kept, then nothing.
    """
    attempts: list[tuple[int | None, _Keep]] = [(cap, "all") for cap in _VALUE_CAPS]
    attempts += [(256, "summary"), (None, "none")]
    full_size = 0
    for cap, keep in attempts:
        event = _trigger(notification, routing_key, default_severity, cap, keep)
        size = event_size(event)
        full_size = full_size or size
        if size <= MAX_EVENT_BYTES:
            break
    # The last attempt always fits: with details removed, every field left is capped far
    # below the limit.
    return Fitted(event, size, full_size)


def _bare_event(action: Action, alert: Alert, routing_key: str) -> dict[str, Any]:
    return {"routing_key": routing_key, "event_action": action, "dedup_key": dedup_key(alert)}


def _trigger(
    notification: Notification, routing_key: str, default: str, cap: int | None, keep: _Keep
) -> dict[str, Any]:
    """The trigger event, with label and annotation values cut to `cap` characters."""
    alert = notification.alert
    labels = alert.labels
    payload: dict[str, Any] = {
        "summary": _summary(alert, notification.context),
        "source": clip(_first(labels, _SOURCE_LABELS) or CLIENT, MAX_FIELD_CHARS),
        "severity": severity(labels, default),
        "timestamp": alert.started,
        "class": clip(alert.name, MAX_FIELD_CHARS),
    }
    component = _first(labels, _COMPONENT_LABELS)
    if component:
        payload["component"] = clip(component, MAX_FIELD_CHARS)
    group = _first(labels, _GROUP_LABELS)
    if group:
        payload["group"] = clip(group, MAX_FIELD_CHARS)
    payload["custom_details"] = _details(notification, cap, keep)
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(alert),
        "payload": payload,
        "client": CLIENT,
    }
    if keep != "none":
        links = _links(alert)
        if links:
            event["links"] = links
        client_url = _client_url(alert)
        if client_url:
            event["client_url"] = client_url
    return event


def _client_url(alert: Alert) -> str:
    """PagerDuty's "View in" link: Alertmanager for its alerts; for a Grafana alert its
    dashboard, else its rule (generatorURL), else Grafana itself."""
    if alert.grafana is not None:
        for url in (alert.grafana.dashboard_url, alert.generator_url):
            if _is_web_url(url):
                return url
    return alert.external_url


def _details(notification: Notification, cap: int | None, keep: _Keep) -> dict[str, Any]:
    alert = notification.alert
    if keep == "none":
        where = "Grafana" if alert.grafana is not None else "Alertmanager"
        return {
            "error": "Details were removed because the event exceeded PagerDuty's "
            f"limit of {MAX_EVENT_BYTES} bytes; see the alert in {where}.",
            "source": alert.source,
        }
    details: dict[str, Any] = {"source": alert.source}
    if keep == "all":
        details["labels"] = _capped(alert.labels, cap)
        details["annotations"] = _capped(alert.annotations, cap)
    else:
        details["annotations"] = _capped(
            {k: v for k, v in alert.annotations.items() if k in _SUMMARY_ANNOTATIONS}, cap
        )
    details.update(_context_details(notification.context, cap))
    if alert.grafana is not None:
        # The numbers that fired a Grafana alert, by refId; valueString names their series.
        details["query_values"] = query_numbers(alert)
        details["value_string"] = clip(alert.grafana.value_string, cap)
    details["notification_reason"] = str(notification.reason)
    details["route"] = notification.route
    details["fingerprint"] = alert.fingerprint
    details["starts_at"] = alert.started
    limit = f"to keep the event within PagerDuty's limit of {MAX_EVENT_BYTES} bytes"
    if keep == "summary":
        details["truncated"] = f"labels and other annotations were removed {limit}"
    elif cap is not None:
        details["truncated"] = f"values over {cap} characters were cut {limit}"
    return details


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
    return clip(summary, MAX_SUMMARY_CHARS)


def _key_cost(context: CostContext) -> str:
    """The cost figure worth a glance on a phone: the first $/h value, else the first value."""
    if not context.values:
        return ""
    chosen = next((v for v in context.values if v.unit is Unit.USD_PER_HOUR), context.values[0])
    return f"{chosen.title} {format_context(chosen)}"


def _context_details(context: CostContext, cap: int | None) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if context.values:
        details["cost_context"] = {clip(v.title, cap): format_context(v) for v in context.values}
        # JSON has no NaN or infinity (httpx2 refuses to encode them): those become null.
        details["cost_values"] = {
            v.name: v.value if math.isfinite(v.value) else None for v in context.values
        }
    if context.unavailable:
        details["cost_context_unavailable"] = {
            name: clip(reason, cap) for name, reason in context.unavailable
        }
    return details


def _links(alert: Alert) -> list[dict[str, str]]:
    # A Grafana alert's generatorURL is its rule's page in Grafana.
    graph = "Prometheus graph" if alert.grafana is None else "Grafana alert rule"
    candidates = [(alert.generator_url, graph)]
    candidates += [(alert.annotations.get(name, ""), text) for name, text in _LINK_ANNOTATIONS]
    # PagerDuty: links[].href is a URL; other annotation text stays in custom_details.
    links = [{"href": href, "text": text} for href, text in candidates if _is_web_url(href)]
    for label, url in grafana_links(alert):
        # A dashboard_url annotation often names the dashboard Grafana links too.
        if _is_web_url(url) and all(link["href"] != url for link in links):
            links.append({"href": url, "text": f"Grafana {label.lower()}"})
    return links


def _is_web_url(url: str) -> bool:
    return url.startswith(("https://", "http://"))


def _first(labels: Mapping[str, str], names: Sequence[str]) -> str:
    for name in names:
        value = labels.get(name, "")
        if value:
            return value
    return ""


def _capped(values: Mapping[str, str], cap: int | None) -> dict[str, str]:
    return {key: clip(value, cap) for key, value in values.items()}


def clip(text: str, limit: int | None) -> str:
    """`text` within `limit` characters (no limit: None), an ellipsis marking a cut."""
    if limit is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"
