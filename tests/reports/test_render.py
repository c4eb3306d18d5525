"""The terminal form of a report."""

from __future__ import annotations

from dataclasses import replace

from receiver.reports.render import render_text
from tests.reports.sample import sample_report


def test_the_text_report_has_every_section_in_order() -> None:
    text = render_text(sample_report())
    assert text.startswith("Cost report daily-costs: 24h to Mon 02 Mar 2026 09:00 CET\n")
    positions = [text.index(f"\n{title}\n") for title in ("Spend", "Waste", "Budgets")]
    assert positions == sorted(positions)
    assert "  whisper-pyannote-stt: $1,476 (month $44,280)" in text
    assert "  idle GPUs $96.00, low utilization $189.48" in text
    assert (
        "  whisper-pyannote-stt, 92 % used, projected $44,280 of $48,000, runs out 2026-03-05"
        in text
    )
    assert "  whisper-pyannote-stt: $61.50/h against $40.00/h (+54 %)" in text
    assert (
        "  HighServiceCost whisper-pyannote-stt: $120.50, from 2026-03-02 06:00, still firing"
        in text
    )
    assert "Graph: http://prometheus.example:9090/graph" in text


def test_late_and_unavailable_are_shown() -> None:
    report = replace(sample_report(late=True), waste=None, unavailable=(("waste", "no data"),))
    text = render_text(report)
    assert "(LATE)" in text and "Sent late" in text
    assert "Waste\n  unavailable: no data\n" in text
