"""Incident cost at resolve: a range query over the alert's window, integrated.

A context value with `incident_cost: true` is a $/hour series. When its alert resolves,
the same query runs as a range query from `startsAt` to `endsAt`, and the series joined
to the alert is integrated over that window: what the incident cost, in $.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from receiver.config.rules import Rules
from receiver.config.schema import ContextSpec
from receiver.context.prometheus import NOT_A_NUMBER, Failure, Query, Series
from receiver.models import Alert, ContextValue, Unit

INCIDENT_COST = "incident_cost"
INCIDENT_COST_TITLE = "Incident cost"
# Range queries for incident cost: at most about this many points per series.
MAX_POINTS = 250
# Steps for range queries, so that alerts with similar windows share one cached query.
_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)
_DAY = 86400
_HOUR = 3600.0
# Between two samples further apart than this many steps, Prometheus had no data.
_GAP_STEPS = 1.5


@dataclass(frozen=True, slots=True)
class Window:
    """One incident-cost value of one resolved alert: its query and the alert's window."""

    name: str
    spec: ContextSpec
    query: Query
    start: float
    end: float


def windows(url: str, rules: Rules, alert: Alert) -> list[Window]:
    """The incident-cost queries of `alert`, in the rules' order; none unless resolved."""
    if alert.status != "resolved" or alert.ends_at is None:
        return []
    start = alert.starts_at.timestamp()
    end = max(alert.ends_at.timestamp(), start)
    return [
        Window(name, spec, range_query(url, spec.query, start, end), start, end)
        for name, spec in rules.context.items()
        if spec.incident_cost
    ]


def incident_cost(window: Window, series: Series) -> ContextValue | Failure:
    """The cost of the incident from its alert's series of `window`."""
    cost = integrate(series.points, window.start, window.end, window.query.step or 1.0)
    if cost is None:
        return NOT_A_NUMBER
    return ContextValue(INCIDENT_COST, INCIDENT_COST_TITLE, cost, Unit.USD)


def range_query(url: str, query: str, start: float, end: float) -> Query:
    """A range query covering [start, end] in at most ~MAX_POINTS steps.

    The window is widened to whole steps, so alerts with similar windows share one query.
    """
    wanted = (end - start) / MAX_POINTS
    step = next((float(s) for s in _STEPS if s >= wanted), None)
    if step is None:
        step = math.ceil(wanted / _DAY) * float(_DAY)
    first = math.floor(start / step) * step
    last = max(math.ceil(end / step) * step, first + step)
    return Query(url, query, first, last, step)


def integrate(
    points: Sequence[tuple[float, float]], start: float, end: float, step: float
) -> float | None:
    """Integral of a $/hour series over [start, end], in $ (trapezoid, time in hours).

    Between two samples the value is linear; stretches without samples (a gap longer than
    1.5 steps, before the first or after the last sample) count nothing. A single sample
    stands for the whole window. None when there is no finite sample.
    """
    finite = [(t, v) for t, v in points if math.isfinite(v)]
    if not finite:
        return None
    if len(finite) == 1:
        return finite[0][1] * (end - start) / _HOUR
    total = 0.0
    for (t0, v0), (t1, v1) in pairwise(finite):
        if t1 - t0 > _GAP_STEPS * step:
            continue
        lo, hi = max(t0, start), min(t1, end)
        if hi <= lo:
            continue
        slope = (v1 - v0) / (t1 - t0)
        total += (v0 + slope * (lo - t0) + v0 + slope * (hi - t0)) / 2 * (hi - lo)
    return total / _HOUR
