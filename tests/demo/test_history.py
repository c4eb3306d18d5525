"""The demo's made-up history: what promtool is given, and that it cannot fire an alert."""

from __future__ import annotations

import re

from receiver.demo.chain import SAMPLES
from receiver.demo.history import DAYS, GAP, STEP, history_openmetrics

END = 1_764_633_600.0  # 2025-12-02 00:00 UTC, a multiple of STEP


def _series(text: str, metric: str, **labels: str) -> list[tuple[int, float]]:
    """(time, value) of the one series of `metric` whose labels include `labels`."""
    points = []
    for line in text.splitlines():
        found = re.match(r"^(\w+)\{(.*)\} (\S+) (\d+)$", line)
        if found is None or found.group(1) != metric:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', found.group(2)))
        if labels.items() <= have.items():
            points.append((int(found.group(4)), float(found.group(3))))
    return points


def test_every_series_covers_the_days_before_the_end_and_nothing_after() -> None:
    text = history_openmetrics(SAMPLES, END)
    assert text.endswith("# EOF\n")
    points = _series(text, "budget_utilization_percentage", service="wav2lip-lipsync")
    assert points[0][0] == END - DAYS * 86400 and points[-1][0] == END
    assert len(points) == DAYS * 86400 // STEP + 1
    assert {value for _, value in points} == {47.0}  # the healthy value throughout
    # Prometheus looks back 5 minutes: the demo starts later than that after the history.
    assert GAP > 300


def test_costs_follow_the_day_and_one_gpu_idles_at_night() -> None:
    text = history_openmetrics(SAMPLES, END)
    cost = dict(_series(text, "service_cost_per_hour", service="wav2lip-lipsync"))
    # 38 $/h healthy: a quarter lower at 00:00 UTC, a quarter higher at 12:00.
    assert cost[int(END)] == 28.5 and cost[int(END) - 12 * 3600] == 47.5
    gpu = dict(_series(text, "DCGM_FI_DEV_GPU_UTIL", Hostname="gpu-node-3", gpu="1"))
    assert gpu[int(END) - 86400 + 3 * 3600] == 0.0  # 03:00 UTC
    assert gpu[int(END) - 86400 + 12 * 3600] == 64.0  # noon: its healthy value
