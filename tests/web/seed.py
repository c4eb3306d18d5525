"""Alert histories for the page's tests, written as the pipeline writes them: EpisodeMetas
and Events through the store's `record_history`; and dead letters queued the real way."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from receiver.events import EpisodeMeta, Event, EventKind
from receiver.models import Alert, CostContext, DedupReason, episode_key
from receiver.store.base import Planned, Store

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
XSS = "<img src=x onerror=alert(1)>"


def make_alert(fingerprint: str, name: str, starts: datetime = T0, **labels: str) -> Alert:
    return Alert(
        fingerprint=fingerprint,
        status="firing",
        labels={"alertname": name, **labels},
        annotations={"summary": f"{name} on {labels.get('service', 'x')}"},
        starts_at=starts,
        generator_url="http://prometheus.example:9090/graph?g0.expr=up",
        external_url="http://alertmanager.example:9093",
        receiver="alert-router",
        group_key='{}:{alertname="' + name + '"}',
    )


def meta_of(alert: Alert) -> EpisodeMeta:
    return EpisodeMeta(
        alert.fingerprint,
        alert.episode,
        alert.name,
        dict(alert.labels),
        alert.source,
        alert.starts_at.timestamp(),
    )


def event(
    subject: Alert, at: float, kind: EventKind, destination: str = "", /, **data: Any
) -> Event:
    return Event(at, subject.fingerprint, subject.episode, kind, data, destination)


def delivered_episode(
    alert: Alert,
    at: float,
    destination: str = "finops-slack",
    *,
    cost: float = 61.5,
    route: str = "gpu-costs",
    failures: int = 1,
) -> list[Event]:
    """Received, context, routed, dedup, `failures` failed tries, then delivered."""
    events = [
        event(
            alert,
            at,
            EventKind.RECEIVED,
            receiver="alert-router",
            group_key=alert.group_key,
            external_url=alert.external_url,
            user_agent="Alertmanager/0.27.0",
            source="alertmanager",
            status="firing",
            duplicate=False,
            alert=alert.to_json(),
        ),
        event(
            alert,
            at + 0.1,
            EventKind.CONTEXT,
            values=[
                {
                    "name": "cost_per_hour",
                    "title": "Service cost",
                    "value": cost,
                    "unit": "usd_per_hour",
                    "query": "sum by (service) (service_cost_per_hour)",
                }
            ],
            unavailable=[],
        ),
        event(
            alert,
            at + 0.2,
            EventKind.ROUTED,
            route=route,
            matchers=[f'alertname="{alert.name}"'],
            when=[{"condition": "cost_per_hour > 50", "values": {"cost_per_hour": cost}}],
            destinations=[destination],
        ),
        event(
            alert,
            at + 0.3,
            EventKind.DEDUP,
            destination,
            status="firing",
            reason=DedupReason.FIRST.value,
            sent=True,
        ),
    ]
    for n in range(1, failures + 1):
        events.append(
            event(
                alert,
                at + 0.3 + n,
                EventKind.ATTEMPT,
                destination,
                attempt=n,
                error="HTTP 503 Service Unavailable",
                http_status=503,
                recoverable=True,
                retry_in=2.0,
                retry_after=None,
            )
        )
    events.append(
        event(
            alert,
            at + 1.5 + failures,
            EventKind.DELIVERED,
            destination,
            attempt=failures + 1,
            ref={"channel": "C0GPUCOSTS1", "ts": "1700000000.000100"},
            digest=1,
        )
    )
    return events


async def record(store: Store, alert: Alert, events: list[Event]) -> None:
    await store.record_history([meta_of(alert)], events)


async def dead_letter(
    store: Store, alert: Alert, destination: str, now: float, error: str = "HTTP 404"
) -> str:
    """Queue `alert` to `destination` and keep it as a dead letter; returns its id."""
    await store.ingest([alert], now, 60)
    items = await store.claim_inbox(100, now, 60)
    planned = [
        Planned(destination, "gpu-costs", 3600, True, i.alert, CostContext(), now) for i in items
    ]
    await store.plan([i.id for i in items], planned, now)
    [item] = await store.claim_outbox(destination, 10, now, 60)
    await store.dead_letter([item], error, now)
    letters = await store.dead_letters()
    return next(
        d.id for d in letters if d.episode == episode_key(alert.fingerprint, alert.starts_at)
    )
