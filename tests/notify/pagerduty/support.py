"""Builders shared by the PagerDuty tests: alerts, notifications, notifiers, what the fake got."""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from receiver.config.secrets import SecretStore
from receiver.models import Alert, CostContext, DedupReason, Notification
from receiver.notify.base import NotifyError, Ref
from receiver.notify.pagerduty.notifier import PagerDutyNotifier
from tests.fakes.pagerduty import FakePagerDuty

STARTS = datetime(2026, 3, 1, 12, 30, 15, 250_000, tzinfo=UTC)
SECRET_NAME = "pagerduty-key"
OTHER_KEY = "An0therRout1ngKeyOf32Characters9"
# What every notify must return well before: the client's own first retry would sleep 3 s.
PROMPT = 2.5


def make_alert(
    *,
    status: str = "firing",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    fingerprint: str = "5e8a2c0f91b3d4a7",
    starts_at: datetime = STARTS,
) -> Alert:
    return Alert(
        fingerprint=fingerprint,
        status=status,
        labels=dict(
            labels
            if labels is not None
            else {
                "alertname": "HighGPUCost",
                "severity": "critical",
                "service": "llm-inference",
                "namespace": "ml-serving",
                "instance": "gpu-node-07:9400",
            }
        ),
        annotations=dict(
            annotations
            if annotations is not None
            else {
                "summary": "llm-inference costs more than $50/hour",
                "runbook_url": "https://runbooks.example.com/gpu/high-cost",
                "dashboard_url": "https://grafana.example.com/d/gpu-costs",
            }
        ),
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=30) if status == "resolved" else None,
        generator_url="http://prometheus.monitoring.svc:9090/graph?g0.expr=service_cost_per_hour",
        external_url="http://alertmanager.monitoring.svc:9093",
        receiver="alert-router",
        group_key='{}:{alertname="HighGPUCost"}',
    )


def make_notification(
    alert: Alert,
    *,
    context: CostContext | None = None,
    reason: DedupReason = DedupReason.FIRST,
) -> Notification:
    if context is None:
        context = CostContext()
    return Notification(
        alert=alert, destination="oncall", route="expensive", reason=reason, context=context
    )


def resolved(alert: Alert) -> Alert:
    return make_alert(
        status="resolved",
        labels=alert.labels,
        annotations=alert.annotations,
        fingerprint=alert.fingerprint,
        starts_at=alert.starts_at,
    )


def send(notifier: PagerDutyNotifier, *notifications: Notification) -> Sequence[Ref | None]:
    return asyncio.run(notifier.notify(notifications))


def send_error(notifier: PagerDutyNotifier, notification: Notification) -> NotifyError:
    with pytest.raises(NotifyError) as caught:
        send(notifier, notification)
    return caught.value


def write_key(directory: Path, key: str) -> None:
    path = directory / SECRET_NAME
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(key + "\n", encoding="utf-8")
    # Move the mtime on explicitly: a rewrite within one clock tick of a coarse file system
    # keeps it, and keys of equal length keep the size, so the store would not notice.
    stamp = max(path.stat().st_mtime_ns, before + 1_000_000_000)
    os.utime(path, ns=(stamp, stamp))


# Loading the system's CAs takes ~50 ms; one context serves every notifier of the run.
SSL_CONTEXT = ssl.create_default_context()


def make_notifier(
    url: str, secrets: SecretStore, *, default_severity: str = "warning", timeout: float = 2.0
) -> PagerDutyNotifier:
    return PagerDutyNotifier(
        "oncall",
        secrets.source(SECRET_NAME),
        events_url=url,
        default_severity=default_severity,
        timeout=timeout,
        ssl_context=SSL_CONTEXT,
    )


def close(notifier: PagerDutyNotifier) -> None:
    asyncio.run(notifier.aclose())


def only_event(fake: FakePagerDuty) -> dict[str, object]:
    events = fake.events
    assert len(events) == 1, events
    event: dict[str, object] = events[0]
    return event


def payload_of(fake: FakePagerDuty) -> dict[str, object]:
    payload = only_event(fake)["payload"]
    assert isinstance(payload, dict)
    return payload


def details_of(fake: FakePagerDuty) -> dict[str, object]:
    details = payload_of(fake)["custom_details"]
    assert isinstance(details, dict)
    return details
