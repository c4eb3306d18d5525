"""A report with every section filled, for rendering and delivery tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from receiver.reports.model import (
    BudgetStatus,
    Change,
    Changes,
    GpuWaste,
    Incident,
    Line,
    Recommendation,
    Report,
    ServiceSpend,
    Spend,
    Waste,
)

END = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # 09:00 in Berlin


def sample_report(*, late: bool = False, service: str = "whisper-pyannote-stt") -> Report:
    start = END - timedelta(hours=24)
    points = tuple((start.timestamp() + i * 600, 61.5 + i % 7) for i in range(145))
    return Report(
        name="daily-costs",
        start=start,
        end=END,
        timezone="Europe/Berlin",
        late=late,
        sections=("spend", "waste", "budgets", "changes", "incidents"),
        spend=Spend(
            rows=(ServiceSpend(service, 1476.0, 44280.0), ServiceSpend("wav2lip", 294.0, 8820.0)),
            window_total=1770.0,
            month_total=53100.0,
        ),
        waste=Waste(
            idle_total=96.0,
            low_total=189.48,
            by_service=((service, 96.0),),
            by_node=(("gpu-node-2", 189.48), ("gpu-node-3", 96.0)),
            gpus=(GpuWaste("gpu-node-3", "1", service, 0.0, 96.0, 0.0),),
            recommendations=(
                Recommendation("time_slicing", "gpu-node-2", "time-slicing on gpu-node-2", 146.88),
            ),
        ),
        budgets=(BudgetStatus(service, 92.0, 44280.0, 48000.0, END + timedelta(days=3)),),
        changes=Changes(rises=(Change(service, 61.5, 40.0),), falls=(Change("wav2lip", 6, 12.25),)),
        incidents=(Incident("HighServiceCost", service, END - timedelta(hours=3), None, 120.5),),
        lines=(Line(service, points, 65.0),),
        graph_url="http://prometheus.example:9090/graph?g0.expr=sum",
    )


def hostile_report() -> Report:
    """Service names that try to mention the channel, open a link, or run very long."""
    return replace(sample_report(service="<!channel> & <https://evil.example|x> " + "y" * 5000))
