"""The report's chart: $/h of the top services over the window, with their budget lines.

matplotlib with the Agg backend (no display), on a Figure of its own (not pyplot's global
state), so charts drawn by concurrent reports never share anything.
"""

from __future__ import annotations

import io
from zoneinfo import ZoneInfo

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from receiver.reports.model import Line, Report

WIDTH, HEIGHT = 1200, 600  # pixels: a Slack preview shows this wide image whole
_DPI = 100


def render_chart(report: Report) -> bytes:
    """The chart of `report` as PNG bytes, WIDTH x HEIGHT pixels."""
    return chart_png(report.lines, f"$/h by service: {report.name}", ZoneInfo(report.timezone))


def chart_png(lines: tuple[Line, ...], heading: str, zone: ZoneInfo) -> bytes:
    figure = Figure(figsize=(WIDTH / _DPI, HEIGHT / _DPI), dpi=_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colors = [f"C{i % 10}" for i in range(len(lines))]
    for line, color in zip(lines, colors, strict=True):
        # matplotlib's dates are days since its default epoch, 1970-01-01 UTC.
        times = [t / 86400 for t, _ in line.points]
        axes.plot(times, [v for _, v in line.points], color=color, linewidth=2, label=line.service)
        if line.budget_rate is not None:
            axes.axhline(
                line.budget_rate,
                color=color,
                linestyle="--",
                linewidth=1,
                label=f"{line.service} budget",
            )
    if not lines:
        axes.text(0.5, 0.5, "no cost data in the window", ha="center", transform=axes.transAxes)
    # matplotlib ships no types for its date locators; the axis shows the report's zone.
    locator = AutoDateLocator(tz=zone)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator, tz=zone))  # type: ignore[no-untyped-call]
    axes.set_ylabel("$/h")
    axes.set_ylim(bottom=0)
    axes.set_title(heading)
    axes.grid(True, alpha=0.3)
    if lines:
        # Below the plot: inside it, the legend would hide the lines it names.
        axes.legend(
            loc="upper center", bbox_to_anchor=(0.5, -0.1), fontsize="small", ncol=4, frameon=False
        )
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=_DPI)
    return out.getvalue()
