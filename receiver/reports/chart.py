"""The charts: a report's $/h of the top services over its window, with their budget lines,
and an alert's $/h series over the last hours, with the start of its episode marked.

matplotlib with the Agg backend (no display), on a Figure of its own (not pyplot's global
state), so charts drawn at once (concurrent reports, alerts) never share anything.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from receiver.reports.model import Line, Report

WIDTH, HEIGHT = 1200, 600  # pixels: a Slack preview shows this wide image whole
_DPI = 100
_DAY = 86400.0
# Between two samples further apart than this many steps, Prometheus had no data: the
# line breaks there rather than drawing a slope through the gap.
_GAP_STEPS = 1.5
_SERIES_COLOR = "C0"
_EPISODE_COLOR = "C3"
# The alert chart's $/h scale reaches this far above the series' peak: room for the
# episode's label, which would otherwise sit on the line.
_HEADROOM = 1.25


def render_chart(report: Report) -> bytes:
    """The chart of `report` as PNG bytes, WIDTH x HEIGHT pixels; a report sent late says
    so on its chart too (the chart may be seen apart from its message)."""
    late = " (LATE)" if report.late else ""
    heading = f"$/h by service: {report.name}{late}"
    return chart_png(report.lines, heading, ZoneInfo(report.timezone))


def chart_png(lines: tuple[Line, ...], heading: str, zone: tzinfo) -> bytes:
    figure, axes = _figure()
    colors = [f"C{i % 10}" for i in range(len(lines))]
    for line, color in zip(lines, colors, strict=True):
        times = [_days(t) for t, _ in line.points]
        name = _literal(line.service)
        axes.plot(times, [v for _, v in line.points], color=color, linewidth=2, label=name)
        if line.budget_rate is not None:
            axes.axhline(
                line.budget_rate, color=color, linestyle="--", linewidth=1, label=f"{name} budget"
            )
    if not lines:
        axes.text(0.5, 0.5, "no cost data in the window", ha="center", transform=axes.transAxes)
    return _finish(figure, axes, heading, zone, legend=bool(lines))


def render_alert_chart(
    points: Sequence[tuple[float, float]],
    *,
    heading: str,
    label: str,
    started: datetime,
    start: datetime,
    end: datetime,
    step: float,
) -> bytes:
    """An alert's $/h series (`points`: unix seconds, $/h) from `start` to `end` as PNG
    bytes, WIDTH x HEIGHT pixels, times in UTC. The episode's start (`started`) is a
    labelled vertical line (at the left edge when it lies before `start`), and the episode
    shaded from there on."""
    figure, axes = _figure()
    times, values = _with_gaps(points, step)
    axes.plot(times, values, color=_SERIES_COLOR, linewidth=2, label=_literal(label))
    began = started.timestamp()
    left, right = _days(start.timestamp()), _days(end.timestamp())
    when = f"{started.astimezone(UTC):%d %b %H:%M} UTC"
    if began >= start.timestamp():
        x = _days(min(began, end.timestamp()))
        label, text = f"episode started {when}", f"episode started\n{when}"
    else:
        # Firing since before the window: the whole chart is the episode.
        x = left
        label = f"episode started {when}, before this window"
        text = f"episode started before this window\n{when}"
    axes.axvspan(x, right, color=_EPISODE_COLOR, alpha=0.08, linewidth=0)
    axes.axvline(x, color=_EPISODE_COLOR, linestyle="--", linewidth=2, label=label)
    # Beside the line, on the side with more room, in the headroom left above the series.
    to_the_right = x - left < (right - left) / 2
    axes.annotate(
        text,
        xy=(x, 1.0),
        xycoords=("data", "axes fraction"),
        xytext=(6 if to_the_right else -6, -6),
        textcoords="offset points",
        ha="left" if to_the_right else "right",
        va="top",
        color=_EPISODE_COLOR,
        fontsize="small",
    )
    axes.set_xlim(left, right)
    axes.set_xlabel("UTC")
    finite = [v for v in values if math.isfinite(v)]
    if finite and max(finite) > 0:
        axes.set_ylim(0, max(finite) * _HEADROOM)
    if not points:
        axes.text(0.5, 0.5, "no cost data in the window", ha="center", transform=axes.transAxes)
    return _finish(figure, axes, heading, UTC, legend=True)


def _figure() -> tuple[Figure, Axes]:
    figure = Figure(figsize=(WIDTH / _DPI, HEIGHT / _DPI), dpi=_DPI)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _finish(figure: Figure, axes: Axes, heading: str, zone: tzinfo, *, legend: bool) -> bytes:
    """The axes' time scale in `zone`, the $/h scale from 0, the title and the legend; the
    figure as PNG bytes."""
    # matplotlib ships no types for its date locators.
    locator = AutoDateLocator(tz=zone)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator, tz=zone))  # type: ignore[no-untyped-call]
    axes.set_ylabel("$/h")
    axes.set_ylim(bottom=0)
    axes.set_title(_literal(heading))
    axes.grid(True, alpha=0.3)
    if legend:
        # Below the plot: inside it, the legend would hide the lines it names.
        axes.legend(
            loc="upper center", bbox_to_anchor=(0.5, -0.1), fontsize="small", ncol=4, frameon=False
        )
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=_DPI)
    return out.getvalue()


def _literal(text: str) -> str:
    """`text` shown as it is: matplotlib reads a pair of `$` as math (a service or label
    value with one, beside the `$/h` of a heading, would be typeset or refused)."""
    return text.replace("$", r"\$")


def _days(unix: float) -> float:
    # matplotlib's dates are days since its default epoch, 1970-01-01 UTC.
    return unix / _DAY


def _with_gaps(
    points: Sequence[tuple[float, float]], step: float
) -> tuple[list[float], list[float]]:
    """Times (matplotlib days) and values, with a NaN wherever samples are missing."""
    times: list[float] = []
    values: list[float] = []
    previous: float | None = None
    for t, v in points:
        if previous is not None and t - previous > _GAP_STEPS * step:
            times.append(_days((previous + t) / 2))
            values.append(math.nan)
        times.append(_days(t))
        values.append(v)
        previous = t
    return times, values
