"""Building a report: each section from Prometheus range queries, into a `Report`.

- spend: `queries.spend` ($/h per service) integrated over the window and over the month
  to date (from the first of the month, UTC, as the platform's budgets count);
- waste: `receiver.reports.waste`;
- budgets: used % (`queries.budget_used`) and projected month-end (`queries.projection`)
  at the report's time, against the budgets file of the rules, with the date each budget
  runs out at the current rate (`receiver.context.budgets.exhaustion_time`);
- changes: each service's $/h at the report's time against its average over the 7 days
  before, the largest rises and falls;
- incidents: the cost alerts of the window as given (the history feeds them), costliest
  first.

A section whose query fails is left out with its reason; the others are still sent.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Coroutine, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from receiver.config.budgets import Budget, read_budgets
from receiver.config.durations import format_duration
from receiver.config.reports import ReportSpec
from receiver.config.rules import Rules
from receiver.context.budgets import exhaustion_time
from receiver.context.prometheus import Failure, PrometheusClient, Series
from receiver.reports.fetch import Reader, Window, by_label, last_values
from receiver.reports.model import (
    BudgetStatus,
    Change,
    Changes,
    Incident,
    Line,
    Report,
    ServiceSpend,
    Spend,
)
from receiver.reports.waste import waste_section

BASELINE = 7 * 86400.0  # changes: the average over the 7 days before the report
_MIN_CHANGE = 0.01  # $/h: smaller differences are rounding, not change


async def build_report(
    name: str,
    spec: ReportSpec,
    rules: Rules,
    prometheus: PrometheusClient,
    now: datetime,
    incidents: Sequence[Incident] = (),
    *,
    late: bool = False,
    prometheus_url: str | None = None,
    budgets: Mapping[str, Budget] | None = None,
) -> Report:
    """The report `name` for the window ending at `now` (a slot's time). Never raises for
    Prometheus: a failed section is named in `Report.unavailable`.

    `prometheus_url` (env PROMETHEUS_URL) overrides the rules'; `budgets` the budgets file
    of the rules (read here when None)."""
    end = now.astimezone(UTC)
    start = end - timedelta(seconds=spec.window)
    url = (prometheus_url or rules.spec.prometheus.url).rstrip("/")
    reader = Reader(prometheus, url, rules.spec.prometheus.timeout)
    queries = spec.queries
    t0, t1 = start.timestamp(), end.timestamp()
    month = end.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
    wanted = set(spec.sections)
    unavailable: list[tuple[str, str]] = []
    budget_map, budget_error = _budgets(rules, budgets) if "budgets" in wanted else ({}, None)
    if budget_error is not None:
        unavailable.append(("budgets", budget_error))

    reads: dict[str, Coroutine[Any, Any, Window | tuple[Series, ...] | Failure]] = {
        "window": reader.window(queries.spend, t0, t1),
        "now": reader.at(queries.spend, t1),
    }
    if "spend" in wanted:
        reads["month"] = reader.window(queries.spend, month, t1)
    if "changes" in wanted:
        reads["baseline"] = reader.window(queries.spend, t1 - BASELINE, t1)
    if "waste" in wanted:
        reads["utilization"] = reader.window(queries.gpu_utilization, t0, t1)
        reads["gpu_cost"] = reader.window(queries.gpu_cost, t0, t1)
    if "budgets" in wanted:
        reads["used"] = reader.at(queries.budget_used, t1)
        reads["projected"] = reader.at(queries.projection, t1)
    got = dict(zip(reads, await asyncio.gather(*reads.values()), strict=True))

    def windows(section: str, *keys: str) -> list[Window] | None:
        """The answers of `keys` if `section` is wanted and all of them came back."""
        if section not in wanted:
            return None
        for key in keys:
            answer = got[key]
            if isinstance(answer, Failure):
                unavailable.append((section, answer.reason))
                return None
        return [w for key in keys if isinstance(w := got[key], Window)]

    def instants(section: str, *keys: str) -> list[tuple[Series, ...]] | None:
        if section not in wanted:
            return None
        for key in keys:
            answer = got[key]
            if isinstance(answer, Failure):
                unavailable.append((section, answer.reason))
                return None
        return [a for key in keys if isinstance(a := got[key], tuple)]

    now_answer = got["now"]
    rates = dict(last_values(now_answer, "service")) if isinstance(now_answer, tuple) else {}
    spend_windows = windows("spend", "window", "month")
    report_spend = (
        spend_section(spend_windows[0], spend_windows[1], spec.top) if spend_windows else None
    )
    waste_windows = windows("waste", "utilization", "gpu_cost")
    report_waste = (
        waste_section(waste_windows[0], waste_windows[1], spec.top) if waste_windows else None
    )
    figures = instants("budgets", "used", "projected")
    report_budgets = (
        budgets_section(figures[0], figures[1], budget_map, rates, end, spec.top)
        if figures
        else None
    )
    baseline = windows("changes", "baseline")
    if baseline and isinstance(now_answer, Failure):
        unavailable.append(("changes", now_answer.reason))
        baseline = None
    report_changes = changes_section(baseline[0], rates, spec.top) if baseline else None
    spend_window = got["window"]
    lines: tuple[Line, ...] = ()
    if isinstance(spend_window, Window):
        lines = chart_lines(spend_window, budget_map, end, spec.top)
    return Report(
        name=name,
        start=start,
        end=end,
        timezone=spec.timezone,
        late=late,
        sections=tuple(spec.sections),
        spend=report_spend,
        waste=report_waste,
        budgets=report_budgets,
        changes=report_changes,
        incidents=incidents_section(incidents, start, end, spec.top)
        if "incidents" in wanted
        else None,
        lines=lines,
        unavailable=tuple(unavailable),
        graph_url=graph_url(url, queries.spend, spec.window, end),
    )


def spend_section(window: Window, month: Window, top: int) -> Spend:
    """$ per service over the window and the month to date, costliest first."""
    in_window = {k: window.integral(s) for k, s in by_label(window.series, "service").items()}
    in_month = {k: month.integral(s) for k, s in by_label(month.series, "service").items()}
    ranked = sorted(in_window, key=lambda k: -in_window[k])
    rows = tuple(ServiceSpend(k, in_window[k], in_month.get(k, 0.0)) for k in ranked[:top])
    return Spend(rows, sum(in_window.values()), sum(in_month.values()))


def budgets_section(
    used: tuple[Series, ...],
    projected: tuple[Series, ...],
    budgets: Mapping[str, Budget],
    rates: Mapping[str, float],
    now: datetime,
    top: int,
) -> tuple[BudgetStatus, ...]:
    """Each service with a budget figure, the most used first."""
    used_by = last_values(used, "service")
    projected_by = last_values(projected, "service")
    services = set(used_by) | set(projected_by) | set(budgets)
    rows: list[BudgetStatus] = []
    for service in services:
        budget = budgets.get(service)
        runs_out = None
        if budget is not None:
            runs_out = exhaustion_time(
                budget.monthly,
                now,
                used_percent=used_by.get(service),
                cost_per_hour=rates.get(service),
            )
        rows.append(
            BudgetStatus(
                service,
                used_by.get(service),
                projected_by.get(service),
                budget.monthly if budget is not None else None,
                runs_out,
            )
        )
    rows.sort(key=lambda r: (-(r.used_percent or 0.0), r.service))
    return tuple(rows[:top])


def changes_section(baseline: Window, rates: Mapping[str, float], top: int) -> Changes:
    """$/h now against the 7-day average, the `top` largest rises and falls."""
    hours = (baseline.end - baseline.start) / 3600
    average = {
        k: baseline.integral(s) / hours for k, s in by_label(baseline.series, "service").items()
    }
    changes = [
        Change(service, rates.get(service, 0.0), average.get(service, 0.0))
        for service in set(rates) | set(average)
    ]
    rises = sorted((c for c in changes if c.delta >= _MIN_CHANGE), key=lambda c: -c.delta)
    falls = sorted((c for c in changes if c.delta <= -_MIN_CHANGE), key=lambda c: c.delta)
    return Changes(tuple(rises[:top]), tuple(falls[:top]))


def incidents_section(
    incidents: Sequence[Incident], start: datetime, end: datetime, top: int
) -> tuple[Incident, ...]:
    """The episodes that overlap the window, costliest first (unknown cost last)."""
    inside = [
        i for i in incidents if i.starts_at <= end and (i.ends_at is None or i.ends_at >= start)
    ]
    inside.sort(key=lambda i: (i.cost is None, -(i.cost or 0.0), i.starts_at))
    return tuple(inside[:top])


def chart_lines(
    window: Window, budgets: Mapping[str, Budget], now: datetime, top: int
) -> tuple[Line, ...]:
    """$/h of the top services by window spend, with each one's budget rate."""
    series = by_label(window.series, "service")
    ranked = sorted(series, key=lambda k: -window.integral(series[k]))[:top]
    hours = _hours_in_month(now)
    lines = []
    for service in ranked:
        points = tuple((t, v) for t, v in series[service].points if window.start <= t)
        budget = budgets.get(service)
        lines.append(Line(service, points, budget.monthly / hours if budget else None))
    return tuple(lines)


def graph_url(prometheus: str, query: str, window: float, end: datetime) -> str:
    """Prometheus' graph page of the spend query over the window (for webhooks, which
    cannot carry a chart)."""
    params = {
        "g0.expr": query,
        "g0.tab": "0",
        "g0.range_input": format_duration(window),
        "g0.end_input": end.strftime("%Y-%m-%d %H:%M:%S"),
    }
    return f"{prometheus}/graph?{urllib.parse.urlencode(params)}"


def _budgets(
    rules: Rules, given: Mapping[str, Budget] | None
) -> tuple[Mapping[str, Budget], str | None]:
    if given is not None:
        return given, None
    path = rules.budgets_path()
    if path is None:
        return {}, None
    try:
        return read_budgets(path), None
    except ValueError as exc:
        return {}, str(exc)


def _hours_in_month(now: datetime) -> float:
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (first + timedelta(days=32)).replace(day=1)
    return (following - first).total_seconds() / 3600
