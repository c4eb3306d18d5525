"""The chart: a PNG that decodes, has the expected size and shows something."""

from __future__ import annotations

import dataclasses
import io
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PIL import Image, ImageChops, ImageStat

from receiver.reports.chart import HEIGHT, WIDTH, render_alert_chart, render_chart
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


# -- the alert chart -------------------------------------------------------------------

ALERT_END = END
ALERT_START = ALERT_END - timedelta(hours=6)
STEP = 120.0


def _alert_points(started: datetime) -> list[tuple[float, float]]:
    """$/h every STEP over the 6 h: 40 before the episode, 85 from its start."""
    t0, t1 = ALERT_START.timestamp(), ALERT_END.timestamp()
    count = int((t1 - t0) // STEP) + 1
    return [
        (t0 + i * STEP, 85.0 if t0 + i * STEP >= started.timestamp() else 40.0)
        for i in range(count)
    ]


def _alert_chart(started: datetime, points: list[tuple[float, float]] | None = None) -> bytes:
    return render_alert_chart(
        _alert_points(started) if points is None else points,
        heading="HighGPUCost: Service cost, last 6 h",
        label="Service cost ($/h): service=whisper-pyannote-stt",
        started=started,
        start=ALERT_START,
        end=ALERT_END,
        step=STEP,
    )


def _marker_columns(png: bytes) -> list[int]:
    """x of every pixel in the episode marker's red (matplotlib's C3, #d62728)."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    data = image.tobytes()
    return [
        (i // 3) % image.width
        for i in range(0, len(data), 3)
        if data[i] > 180 and data[i + 1] < 90 and data[i + 2] < 90
    ]


def test_the_alert_chart_decodes_has_its_size_and_marks_the_episode() -> None:
    started = ALERT_START + timedelta(hours=4)
    png = _alert_chart(started)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    Image.open(io.BytesIO(png)).verify()
    assert Image.open(io.BytesIO(png)).size == (WIDTH, HEIGHT)
    assert _stddev(png) > 10
    columns = _marker_columns(png)
    # A dashed line down the whole plot, its label and its legend entry.
    assert len(columns) > 300
    # The line itself is the red column with the most pixels, 4 h into the 6 h shown (the
    # plot spans most of the width; the axis labels take the left edge).
    line = max(set(columns), key=columns.count)
    assert 0.6 < line / WIDTH < 0.75


def test_an_episode_older_than_the_window_is_marked_at_its_left_edge() -> None:
    png = _alert_chart(ALERT_START - timedelta(hours=2))
    columns = _marker_columns(png)
    assert len(columns) > 300
    line = max(set(columns), key=columns.count)
    assert line / WIDTH < 0.1


def test_an_alert_chart_without_points_still_draws_and_says_so() -> None:
    png = _alert_chart(ALERT_START + timedelta(hours=1), points=[])
    assert Image.open(io.BytesIO(png)).size == (WIDTH, HEIGHT)
    assert _stddev(png) > 1
    assert len(_marker_columns(png)) > 300


def test_dollar_signs_in_names_are_drawn_as_they_are() -> None:
    # matplotlib reads text between two `$` as math; "$\frac{$" would not even parse.
    hostile = r"svc-$\frac{$-x"
    png = render_chart(_report((_line(hostile, 10.0, None),)))
    assert Image.open(io.BytesIO(png)).size == (WIDTH, HEIGHT)
    png = render_alert_chart(
        _alert_points(ALERT_START),
        heading=f"{hostile}: Service cost, last 6 h",
        label=f"Service cost ($/h): service={hostile}",
        started=ALERT_START,
        start=ALERT_START,
        end=ALERT_END,
        step=STEP,
    )
    assert Image.open(io.BytesIO(png)).size == (WIDTH, HEIGHT)


def test_a_late_reports_chart_says_so_in_its_title() -> None:
    lines = (_line("whisper-pyannote-stt", 61.5, 60.0),)
    on_time = Image.open(io.BytesIO(render_chart(_report(lines)))).convert("L")
    late_report = dataclasses.replace(_report(lines), late=True)
    late = Image.open(io.BytesIO(render_chart(late_report))).convert("L")
    # Only the title differs (" (LATE)" is longer): every changed pixel is in the top band.
    changed = ImageChops.difference(on_time, late).getbbox()
    assert changed is not None
    bottom = changed[3]
    assert bottom <= HEIGHT * 0.08, changed
