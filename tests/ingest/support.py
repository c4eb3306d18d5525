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
