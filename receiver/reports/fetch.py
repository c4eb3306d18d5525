"""Prometheus reads of a report: range queries over a window, and values at one instant.

Every read is evaluated at the report's time, not the wall clock, so a late report and
`alert-router report NAME --at TIME` show what the scheduled report would have shown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from receiver.context.incident import integrate, range_query
from receiver.context.prometheus import Failure, PrometheusClient, Query, Series

# An instant read at time t is a range query from t to t: Prometheus answers the last
# sample at or before t (within its 5-minute lookback), as an instant query at t would.
_INSTANT_STEP = 60.0


@dataclass(frozen=True, slots=True)
class Window:
    """One range query's answer: the series and the step they were sampled at."""

    series: tuple[Series, ...]
    start: float
    end: float
    step: float

    def integral(self, series: Series) -> float:
        """$ of a $/hour series over [start, end] (trapezoid; gaps count nothing)."""
        return integrate(series.points, self.start, self.end, self.step) or 0.0


class Reader:
    """Reads of one report: the client, Prometheus' URL and the per-query time limit."""

    def __init__(self, client: PrometheusClient, url: str, limit: float) -> None:
        self._client = client
        self.url = url.rstrip("/")
        self._limit = limit

    async def window(self, query: str, start: float, end: float) -> Window | Failure:
        sent = range_query(self.url, query, start, end)
        result = await self._client.query(sent, self._limit)
        if isinstance(result, Failure):
            return result
        assert sent.step is not None
        return Window(result, start, end, sent.step)

    async def at(self, query: str, when: float) -> tuple[Series, ...] | Failure:
        sent = Query(self.url, query, when, when, _INSTANT_STEP)
        return await self._client.query(sent, self._limit)


def by_label(series: tuple[Series, ...], label: str) -> dict[str, Series]:
    """Series keyed by one label's value; series without it are left out."""
    return {s.labels[label]: s for s in series if label in s.labels}


def last_values(series: tuple[Series, ...], label: str) -> Mapping[str, float]:
    """The last finite value of each series, keyed by `label`."""
    values: dict[str, float] = {}
    for key, one in by_label(series, label).items():
        finite = [v for _, v in one.points if math.isfinite(v)]
        if finite:
            values[key] = finite[-1]
    return values
