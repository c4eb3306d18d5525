"""A week of made-up history for the demo's Prometheus, so its cost report has sums to show.

The chain's exporter only starts with the demo: a report over 24 hours would integrate a
few seconds. Before Prometheus starts, promtool (shipped with Debian's `prometheus`) writes
8 days of the platform's healthy values into its data directory (`promtool tsdb
create-blocks-from openmetrics`): service costs that rise by day and fall at night, and
GPU 1 of gpu-node-3 idle every night, so the report shows spend, changes and waste.

The history ends more than Prometheus' 5-minute lookback before the demo starts, and every
alert rule is an instant query: the history cannot make an alert fire or resolve.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from receiver.demo.chain import SAMPLES, Sample, escape_label

DAYS = 8  # the changes section averages the 7 days before the report
STEP = 300  # seconds between samples, as a 5-minute scrape would keep them
GAP = 600  # seconds between the history's end and the demo's start (> the lookback)
_NIGHT = range(0, 6)  # UTC hours when gpu-node-3's GPU 1 sits idle
_IDLE_GPU = ("gpu-node-3", "1")


def history_openmetrics(samples: Sequence[Sample], end: float) -> str:
    """The samples' healthy (`resolved`) values for DAYS before `end`, as OpenMetrics."""
    lines: list[str] = []
    for name in dict.fromkeys(s.metric for s in samples):
        lines.append(f"# TYPE {name} gauge")
        for sample in samples:
            if sample.metric != name:
                continue
            labels = ",".join(f'{k}="{escape_label(v)}"' for k, v in sorted(sample.labels.items()))
            for at, value in _points(sample, end):
                lines.append(f"{name}{{{labels}}} {value!r} {at}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def write_history(promtool: str | None, data_dir: Path) -> None:
    """The demo's history in `data_dir`, saying so; without promtool (or when it fails) the
    demo goes on, and its report sums only the minutes the demo ran."""
    if promtool is None:
        print("\n== no promtool here: the cost report will sum only the demo's own minutes")
        return
    print(f"\n== writing {DAYS} days of made-up cost history into Prometheus (promtool)")
    try:
        backfill(promtool, data_dir, SAMPLES, time.time() - GAP)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", None) or exc
        print(f"alert-router demo: no history (the report will be thin): {detail}")


def backfill(promtool: str, data_dir: Path, samples: Sequence[Sample], end: float) -> None:
    """Write the history into `data_dir` (before Prometheus starts on it).

    Raises subprocess.CalledProcessError (with promtool's output) when promtool refuses."""
    data_dir.mkdir(parents=True, exist_ok=True)
    source = data_dir.parent / "history.om"
    source.write_text(history_openmetrics(samples, end), encoding="utf-8")
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data_dir)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _points(sample: Sample, end: float) -> Iterator[tuple[int, float]]:
    last = int(end) - int(end) % STEP
    for at in range(last - DAYS * 86400, last + 1, STEP):
        hour = at % 86400 / 3600
        value = sample.resolved
        if sample.metric == "service_cost_per_hour":
            # Busier by day (UTC), quieter at night: a quarter up and down around the value.
            value = round(value * (1 + 0.25 * math.sin((hour - 6) / 24 * 2 * math.pi)), 2)
        labels = sample.labels
        if (labels.get("Hostname"), labels.get("gpu")) == _IDLE_GPU and int(hour) in _NIGHT:
            value = 0.0
        yield at, value
