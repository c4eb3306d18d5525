"""The five seed cost alerts as Alertmanager would post them (for `demo` and `send`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from receiver.models import format_time, labels_fingerprint

_ZERO = "0001-01-01T00:00:00Z"

SEED_ALERTS: list[tuple[dict[str, str], dict[str, str]]] = [
    (
        {
            "alertname": "BudgetThresholdExceeded",
            "service": "whisper-pyannote-stt",
            "namespace": "ai-models",
            "severity": "critical",
            "team": "finops",
        },
        {
            "summary": "whisper-pyannote-stt has used 92% of its monthly budget",
            "runbook_url": "https://runbooks.example.internal/budget",
        },
    ),
    (
        {
            "alertname": "HighGPUCost",
            "service": "wav2lip-lipsync",
            "namespace": "ai-models",
            "severity": "warning",
            "team": "finops",
        },
        {"summary": "wav2lip-lipsync costs $61.50/hour (threshold $50/hour)"},
    ),
    (
        {
            "alertname": "LowGPUUtilization",
            "Hostname": "gpu-node-2",
            "gpu": "0",
            "app": "wav2lip-lipsync",
            "kubernetes_namespace": "ai-models",
            "severity": "warning",
            "team": "platform",
        },
        {"summary": "GPU 0 on gpu-node-2 at 12% utilization"},
    ),
    (
        {
            "alertname": "HighCostPerJob",
            "service": "whisper-pyannote-stt",
            "queue_name": "transcribe",
            "namespace": "ai-models",
            "severity": "warning",
            "team": "finops",
        },
        {"summary": "whisper-pyannote-stt jobs cost $0.72 each (threshold $0.50)"},
    ),
    (
        {
            "alertname": "IdleGPU",
            "Hostname": "gpu-node-3",
            "gpu": "1",
            "kubernetes_namespace": "ai-models",
            "severity": "warning",
            "team": "platform",
        },
        {"summary": "GPU 1 on gpu-node-3 is idle while pods are running"},
    ),
]


def webhook(
    alerts: list[tuple[dict[str, str], dict[str, str]]],
    *,
    status: str = "firing",
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    external_url: str = "http://alertmanager.monitoring.svc:9093",
    generator_url: str = "http://prometheus.monitoring.svc:9090/graph",
) -> dict[str, Any]:
    """An Alertmanager webhook (version 4) carrying `alerts` (labels, annotations)."""
    start = starts_at or datetime.now(UTC)
    end = ends_at or (datetime.now(UTC) if status == "resolved" else None)
    items = [
        {
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": format_time(start),
            "endsAt": format_time(end) if end else _ZERO,
            "generatorURL": generator_url,
            "fingerprint": labels_fingerprint(labels),
        }
        for labels, annotations in alerts
    ]
    common = dict(set.intersection(*(set(a[0].items()) for a in alerts))) if alerts else {}
    return {
        "receiver": "alert-router",
        "status": status,
        "alerts": items,
        "groupLabels": {"alertname": common.get("alertname", "")} if common else {},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": external_url,
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
    }
