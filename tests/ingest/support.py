"""What the ingest tests share: the token header, the fixture payloads, reading /metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.service import TOKEN

DATA = Path(__file__).resolve().parents[1] / "data"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text())
    return data


def metric(client: httpx.Client, name: str, labels: str = "") -> float:
    text = client.get("/metrics").text
    key = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{key} not in /metrics")


# What the shipped LowGPUUtilization rule (rules/prometheus/cost-alerts.yaml) writes into
# each alert, past the fixture's labels and summary: the description and runbook URL.
_DESCRIPTION = (
    "GPU {gpu} on node {node} has been below 30% utilization for an hour (now {util}%). "
    "Consider a smaller instance type, bin-packing more work onto it, or scaling the node "
    "pool down."
)
_RUNBOOK = "https://runbooks.example.com/gpu-cost/LowGPUUtilization"


def large_group(count: int) -> dict[str, Any]:
    """One Alertmanager group of `count` realistic alerts: the group fixture's envelope,
    its first alert's shape, each alert one GPU of a fleet with the shipped rule's
    annotations (about 790 bytes an alert as Alertmanager writes it, compact)."""
    group = fixture("alertmanager-webhook-v4-group.json")
    template = group["alerts"][0]
    alerts = []
    for i in range(count):
        gpu, node, util = str(i % 8), f"gpu-node-{i // 8}", i % 30
        labels = {**template["labels"], "gpu": gpu, "Hostname": node}
        summary = f"GPU {gpu} on {node} at {util}% utilization"
        description = _DESCRIPTION.format(gpu=gpu, node=node, util=util)
        annotations = {"summary": summary, "description": description, "runbook_url": _RUNBOOK}
        alerts.append(
            {**template, "labels": labels, "annotations": annotations, "fingerprint": f"{i:016x}"}
        )
    group["alerts"] = alerts
    return group
