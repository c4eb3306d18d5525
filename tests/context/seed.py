"""What the tests of cost context share: the exporter's seed, the seed alerts, rules
builders and one-shot enrichment."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

from receiver.config.rules import Rules, load_rules
from receiver.context.enrich import Enricher
from receiver.metrics import Metrics
from receiver.models import Alert, CostContext, labels_fingerprint

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "rules" / "routes.yaml"

T = TypeVar("T")

WHISPER = {"service": "whisper-pyannote-stt", "namespace": "ai-models"}
LIPSYNC = {"service": "wav2lip-lipsync", "namespace": "ai-models"}

# What the exporter serves: the platform's metrics for two services and two GPU nodes.
SEED: list[tuple[str, dict[str, str], float]] = [
    ("service_cost_per_hour", WHISPER, 61.5),
    ("service_cost_per_minute", WHISPER, 1.025),
    ("monthly_cost_projection", WHISPER, 44280),
    ("budget_utilization_percentage", WHISPER, 92),
    ("cost_per_job", {"service": WHISPER["service"], "queue_name": "stt-jobs"}, 0.75),
    ("service_cost_per_hour", LIPSYNC, 12.25),
    ("monthly_cost_projection", LIPSYNC, 8820),
    ("budget_utilization_percentage", LIPSYNC, 35),
    ("cost_per_job", {"service": LIPSYNC["service"], "queue_name": "lipsync-jobs"}, 0.05),
    ("service_cost_per_hour", {"service": "big-spender", "namespace": "ai-models"}, 120),
    ("service_cost_per_hour", {"service": "incident-svc", "namespace": "ai-models"}, 60),
    ("service_cost_per_hour", {"service": "nan-svc", "namespace": "ai-models"}, math.nan),
    ("redis_queue_depth", {"queue_name": "stt-jobs", "queue_type": "processing"}, 37),
    ("redis_queue_depth", {"queue_name": "stt-jobs", "queue_type": "pending"}, 5),
    ("redis_queue_depth", {"queue_name": "lipsync-jobs", "queue_type": "processing"}, 3),
    ("total_gpu_hours", {"service": WHISPER["service"], "gpu_type": "T4"}, 1234),
    (
        "gpu_cost_per_hour",
        {"node": "gpu-node-2", "instance_type": "g4dn.12xlarge", "gpu_type": "T4"},
        12.24,
    ),
    (
        "gpu_cost_per_hour",
        {"node": "gpu-node-3", "instance_type": "g5.12xlarge", "gpu_type": "A10G"},
        8.0,
    ),
    *[
        (
            "DCGM_FI_DEV_GPU_UTIL",
            {"Hostname": "gpu-node-2", "gpu": str(gpu), "modelName": "Tesla T4"},
            util,
        )
        for gpu, util in enumerate([12, 80, 9, 21])
    ],
    *[
        (
            "DCGM_FI_DEV_GPU_UTIL",
            {
                "Hostname": "gpu-node-3",
                "gpu": str(gpu),
                "modelName": "NVIDIA A10G",
                "namespace": "ai-models",
                "pod": f"whisper-pyannote-stt-{gpu}",
            },
            util,
        )
        for gpu, util in enumerate([55, 0])
    ],
    ("DCGM_FI_DEV_FB_USED", {"Hostname": "gpu-node-2", "gpu": "0"}, 2048),
    ("DCGM_FI_DEV_FB_FREE", {"Hostname": "gpu-node-2", "gpu": "0"}, 13312),
]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class FakeClock:
    """Monotonic seconds that only move when the test says so (cache expiry)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_alert(**labels: str) -> Alert:
    return Alert(
        fingerprint=labels_fingerprint(labels),
        status="firing",
        labels=labels,
        annotations={},
        starts_at=datetime(2026, 11, 29, 2, 39, 35, tzinfo=UTC),
    )


def resolved(alert: Alert, start: datetime, end: datetime) -> Alert:
    return replace(alert, status="resolved", starts_at=start, ends_at=end)


# The five seed alerts with the labels Prometheus gives them (see ../shared/fixtures).
BUDGET = make_alert(
    alertname="BudgetThresholdExceeded",
    **WHISPER,
    severity="critical",
    team="finops",
    instance="127.0.0.1:19100",
    job="cost",
)
HIGH_GPU_COST = make_alert(alertname="HighGPUCost", **WHISPER, severity="warning", team="finops")
HIGH_COST_PER_JOB = make_alert(
    alertname="HighCostPerJob",
    service=WHISPER["service"],
    queue_name="stt-jobs",
    severity="warning",
    team="finops",
)
LOW_GPU = make_alert(
    alertname="LowGPUUtilization",
    Hostname="gpu-node-2",
    gpu="0",
    app="wav2lip-lipsync",
    kubernetes_namespace="ai-models",
    severity="warning",
    team="platform",
)
IDLE_GPU = make_alert(
    alertname="IdleGPU",
    Hostname="gpu-node-3",
    gpu="1",
    namespace="ai-models",  # the pod holding the GPU (rules/prometheus/cost-alerts.yaml)
    pod="whisper-pyannote-stt-7d9f",
    severity="warning",
    team="platform",
)
SEED_ALERTS = [BUDGET, HIGH_GPU_COST, HIGH_COST_PER_JOB, LOW_GPU, IDLE_GPU]
SERVICE_VALUES = {
    "cost_per_hour": 61.5,
    "monthly_projection": 44280,
    "budget_used": 92,
    "jobs_per_hour": 82,  # $61.50/h / $0.75/job
}


def shipped_data() -> dict[str, Any]:
    """rules/routes.yaml as data, for tests that vary it."""
    data: dict[str, Any] = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    return data


def write_rules(directory: Path, data: Mapping[str, Any]) -> Rules:
    path = directory / "routes.yaml"
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False), encoding="utf-8")
    return load_rules(path)


def custom_rules(directory: Path, context: Mapping[str, Any], **prometheus: Any) -> Rules:
    return write_rules(
        directory,
        {
            "prometheus": {"url": "http://prometheus.invalid:9090", **prometheus},
            "destinations": {"finops-slack": {"slack": {"webhook_url": {"secret": "slack-url"}}}},
            "context": dict(context),
            "default": "finops-slack",
        },
    )


async def enrich_once(
    rules: Rules,
    alerts: Sequence[Alert],
    url: str,
    metrics: Metrics | None = None,
    **options: Any,
) -> list[CostContext]:
    async with httpx.AsyncClient() as client:
        enricher = Enricher(client, metrics or Metrics(), prometheus_url=url, **options)
        try:
            return await enricher.enrich(rules, alerts)
        finally:
            await enricher.aclose()


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def queries(metrics: Metrics, outcome: str = "success") -> float:
    return sample(metrics, "alert_router_prometheus_queries_total", outcome=outcome)


def unavailable(metrics: Metrics, reason: str) -> float:
    return sample(metrics, "alert_router_context_unavailable_total", reason=reason)
