"""The chart: a PNG that decodes, has the expected size and shows something."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PIL import Image, ImageStat

from receiver.reports.chart import HEIGHT, WIDTH, render_chart
from receiver.reports.model import Line, Report

END = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
START = END - timedelta(hours=24)
# Set to a file name to keep the chart this test draws, to look at it.
SAMPLE = os.environ.get("ALERT_ROUTER_CHART_SAMPLE")


def _report(lines: tuple[Line, ...]) -> Report:
    return Report(
        name="daily-costs",
        start=START,
        end=END,
        timezone="Europe/Berlin",
        late=False,
        sections=("spend",),
        lines=lines,
    )


def _line(service: str, base: float, budget: float | None) -> Line:
    t0 = START.timestamp()
    points = tuple((t0 + i * 600, base + (i % 36) * base / 50) for i in range(0, 24 * 6 + 1))
    return Line(service, points, budget)


def _stddev(png: bytes) -> float:
    image = Image.open(io.BytesIO(png)).convert("L")
    return float(ImageStat.Stat(image).stddev[0])


def test_the_png_decodes_has_its_size_and_is_not_blank() -> None:
    report = _report(
        (
            _line("whisper-pyannote-stt", 61.5, 60.0),
            _line("wav2lip-lipsync", 12.25, 15.0),
            _line("big-spender", 30.0, None),
        )
    )
    png = render_chart(report)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    image.verify()
    assert Image.open(io.BytesIO(png)).size == (WIDTH, HEIGHT)
    # A blank white image has no spread; lines, text and grid give plenty.
    assert _stddev(png) > 10
    if SAMPLE:
        Path(SAMPLE).write_bytes(png)


def test_an_empty_window_still_draws_a_chart_that_says_so() -> None:
    png = render_chart(_report(()))
    assert Image.open(io.BytesIO(png)).size == (WIDTH, HEIGHT)
    assert _stddev(png) > 1
