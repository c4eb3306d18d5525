"""A report as plain text, for the terminal (`alert-router report NAME --dry-run`).

The same lines, escaped, make the body of the Slack form (`receiver.notify.slack.report`):
`section_lines` is the one place where a section's words are chosen.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from receiver.config.durations import format_duration
from receiver.context.units import format_value
from receiver.models import Unit
from receiver.reports.model import Report

TITLES = {
    "spend": "Spend",
    "waste": "Waste",
    "budgets": "Budgets",
    "changes": "Changes against the 7-day average",
    "incidents": "Cost incidents",
}


def usd(value: float) -> str:
    return format_value(value, Unit.USD)


def rate(value: float) -> str:
    return format_value(value, Unit.USD_PER_HOUR)


def title(report: Report) -> str:
    """`Cost report daily-costs: 24h to Mon 02 Mar 2026 09:00 CET` (with LATE when late)."""
    zone = ZoneInfo(report.timezone)
    end = report.end.astimezone(zone)
    span = format_duration((report.end - report.start).total_seconds())
    late = " (LATE)" if report.late else ""
    return f"Cost report {report.name}{late}: {span} to {end:%a %d %b %Y %H:%M %Z}"


def late_note(report: Report) -> str | None:
    if not report.late:
        return None
    return "Sent late: the router was down at the scheduled time; the figures are for it."


def section_lines(report: Report, section: str) -> list[str]:
    """The lines of one section (without its title), as plain text."""
    reason = next((why for name, why in report.unavailable if name == section), None)
    lines = [f"unavailable: {reason}"] if reason else []
    if section == "spend" and report.spend is not None:
        spend = report.spend
        lines.append(
            f"total {usd(spend.window_total)} in the window, {usd(spend.month_total)} this month"
        )
        lines += [f"{r.service}: {usd(r.window)} (month {usd(r.month)})" for r in spend.rows]
    elif section == "waste" and report.waste is not None:
        waste = report.waste
        lines.append(f"idle GPUs {usd(waste.idle_total)}, low utilization {usd(waste.low_total)}")
        lines += [f"service {name}: {usd(value)}" for name, value in waste.by_service]
        lines += [f"node {name}: {usd(value)}" for name, value in waste.by_node]
        lines += [f"→ {r.text}: saves {usd(r.saves)}" for r in waste.recommendations]
    elif section == "budgets" and report.budgets is not None:
        for row in report.budgets:
            parts = [row.service]
            if row.used_percent is not None:
                parts.append(f"{format_value(row.used_percent, Unit.PERCENT)} used")
            if row.projected is not None:
                against = f" of {usd(row.budget)}" if row.budget is not None else ""
                over = " OVER" if row.over else ""
                parts.append(f"projected {usd(row.projected)}{against}{over}")
            if row.runs_out is not None:
                parts.append(f"runs out {_day(row.runs_out, report.timezone)}")
            lines.append(", ".join(parts))
    elif section == "changes" and report.changes is not None:
        for change in (*report.changes.rises, *report.changes.falls):
            pct = f" ({change.percent:+.0f} %)" if change.percent is not None else ""
            lines.append(
                f"{change.service}: {rate(change.now)} against {rate(change.average)}{pct}"
            )
    elif section == "incidents" and report.incidents is not None:
        for incident in report.incidents:
            who = f" {incident.service}" if incident.service else ""
            started = _day(incident.starts_at, report.timezone, time=True)
            state = "still firing" if incident.ends_at is None else "resolved"
            cost = usd(incident.cost) if incident.cost is not None else "cost unknown"
            lines.append(f"{incident.alertname}{who}: {cost}, from {started}, {state}")
    if not lines:
        lines.append("nothing to report")
    return lines


def render_text(report: Report) -> str:
    """The whole report for a terminal."""
    out = [title(report)]
    note = late_note(report)
    if note:
        out.append(note)
    for section in report.sections:
        out.append("")
        out.append(TITLES[section])
        out += [f"  {line}" for line in section_lines(report, section)]
    if report.graph_url:
        out += ["", f"Graph: {report.graph_url}"]
    return "\n".join(out) + "\n"


def _day(when: datetime, zone: str, *, time: bool = False) -> str:
    local = when.astimezone(ZoneInfo(zone))
    return f"{local:%Y-%m-%d %H:%M}" if time else f"{local:%Y-%m-%d}"
