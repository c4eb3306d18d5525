"""A few episodes as the pipeline records them, for the readers' tests."""

from __future__ import annotations

from typing import Any

from receiver.events import EpisodeMeta, Event, EventKind, Timeline

CONTEXT: dict[str, Any] = {
    "values": [
        {"name": "gpus", "title": "GPUs", "value": 8, "unit": "count", "query": "q1"},
        {
            "name": "cost_per_hour",
            "title": "GPU $/h",
            "value": 62.1,
            "unit": "usd_per_hour",
            "query": "sum(gpu_cost)",
        },
    ],
    "unavailable": [{"name": "budget", "reason": "prometheus_down", "query": "q3"}],
}


def meta(fp: str = "f1", started: float = 1000.0, **labels: str) -> EpisodeMeta:
    return EpisodeMeta(
        fingerprint=fp,
        episode=f"{fp}@{started:g}",
        alertname=labels.get("alertname", "HighGPUCost"),
        labels={"alertname": "HighGPUCost", "team": "ml", **labels},
        source="alertmanager",
        started_at=started,
    )


def event(m: EpisodeMeta, at: float, kind: EventKind, destination: str = "", **data: Any) -> Event:
    return Event(at, m.fingerprint, m.episode, kind, data, destination)


def delivered_then_resolved(m: EpisodeMeta) -> list[Event]:
    """Routed to two destinations: Slack delivered at once, PagerDuty after a retry; then
    it resolved."""
    t = m.started_at
    return [
        event(m, t + 1, EventKind.RECEIVED, status="firing", duplicate=False),
        event(m, t + 2, EventKind.CONTEXT, **CONTEXT),
        event(m, t + 3, EventKind.ROUTED, route="gpu-costs", destinations=["slack", "pd"]),
        event(m, t + 4, EventKind.DEDUP, "slack", reason="first_notification", sent=True),
        event(m, t + 4, EventKind.DEDUP, "pd", reason="first_notification", sent=True),
        event(m, t + 5, EventKind.DELIVERED, "slack", attempt=1, ref={"ts": "1.5"}, digest=1),
        event(m, t + 5, EventKind.ATTEMPT, "pd", attempt=1, error="503", http_status=503),
        event(m, t + 9, EventKind.DELIVERED, "pd", attempt=2, ref={"dedup_key": "k"}),
        # Alertmanager sent it again: suppressed, which does not hide the delivery.
        event(m, t + 60, EventKind.RECEIVED, status="firing", duplicate=False),
        event(m, t + 61, EventKind.DEDUP, "slack", reason="already_notified", sent=False),
        event(m, t + 120, EventKind.RECEIVED, status="resolved", duplicate=False),
        event(m, t + 121, EventKind.RESOLVED, cost=2.07, duration=120.0, per_hour=62.1),
    ]


def timeline(m: EpisodeMeta, events: list[Event]) -> Timeline:
    return Timeline(m, events, max(e.at for e in events))
