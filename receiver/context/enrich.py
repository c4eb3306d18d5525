"""Cost context from Prometheus: the rules' context queries, joined to alerts.

Each value under `context:` is a PromQL instant query (POST `/api/v1/query`). Its result
series are joined to an alert on labels: every label of a series must equal the alert's
label of the same name, or of the alert label that `join` maps to it (alert `Hostname` ->
result `node`); a series without labels (`sum(x)`, a scalar) applies to every alert.

Batched and cached: one request per distinct query per `cache_ttl` serves every alert of a
storm, and concurrent callers share one in-flight request, so a storm costs O(context
values) queries, not O(alerts). Failures cost only the context: the alert gets an
`unavailable` entry with a reason, `enrich` never raises and never waits longer than the
rules' `timeout`, and a failed query is not retried for min(cache_ttl, 5s).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from urllib.parse import urlsplit, urlunsplit

import httpx

from receiver.config.durations import format_duration
from receiver.config.rules import ContextSpec, PrometheusSpec, Rules
from receiver.context.budgets import Budgets, budget_values
from receiver.metrics import Metrics
from receiver.models import Alert, ContextValue, CostContext, Unit

log = logging.getLogger(__name__)

INCIDENT_COST = "incident_cost"
# A failed query is retried at most this often (or every cache_ttl, if shorter), so a storm
# during an outage does not send one query per alert.
NEGATIVE_TTL = 5.0
# Range queries for incident cost: at most about this many points per series.
MAX_POINTS = 250
# Steps for range queries, so that alerts with similar windows share one cached query.
_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)
_DAY = 86400
_MAX_ERROR_CHARS = 300
_SWEEP_AT = 512


@dataclass(frozen=True, slots=True)
class _Series:
    """One result series: labels (without `__name__`) and (unix time, value) points."""

    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class _Failure:
    """Why a value is missing: a reason code of metrics.CONTEXT_REASONS and a human text."""

    code: str
    reason: str


class _SeriesSet:
    """A query's result series, indexed for the join: series with the same label names
    (a shape) sit in one table keyed by their label values, so finding an alert's series
    costs a lookup per shape, not a pass over every series (a storm joins thousands of
    alerts against results of hundreds of series)."""

    __slots__ = ("_tables", "series", "shapes")

    def __init__(self, series: Iterable[_Series]) -> None:
        self.series = tuple(series)
        tables: dict[tuple[str, ...], dict[tuple[str, ...], _Series]] = {}
        for one in self.series:
            names = tuple(sorted(one.labels))
            values = tuple(one.labels[name] for name in names)
            tables.setdefault(names, {}).setdefault(values, one)
        # Most specific shape first: a match there beats any match in a smaller shape.
        self._tables = sorted(tables.items(), key=lambda item: -len(item[0]))
        self.shapes = frozenset(frozenset(names) for names in tables)

    def __bool__(self) -> bool:
        return bool(self.series)

    def __len__(self) -> int:
        return len(self.series)

    def match(self, labels: Mapping[str, str], to_alert: Mapping[str, str]) -> _Series | bool:
        """The most specific series whose every label equals the alert's (through
        `to_alert`); among equally specific ones, the first in label order. Without one:
        True when some series has only label names the alert carries (the value applies
        to the alert, but has no data for it), False when none has (it does not apply)."""
        best: _Series | None = None
        best_items: list[tuple[str, str]] | None = None
        applies = False
        for names, table in self._tables:
            if best is not None and len(names) < len(best.labels):
                break
            values = []
            for name in names:
                value = labels.get(to_alert.get(name, name))
                if value is None:
                    break
                values.append(value)
            else:
                applies = True
                found = table.get(tuple(values))
                if found is not None:
                    items = sorted(found.labels.items())
                    if best_items is None or items < best_items:
                        best, best_items = found, items
        return best if best is not None else applies


_Result = _SeriesSet | _Failure

_NO_DATA = _Failure("no_data", "no data")
_NOT_A_NUMBER = _Failure("not_a_number", "not a number")


@dataclass(frozen=True, slots=True)
class _Key:
    """A query to send: instant when `step` is None, else a range query."""

    url: str
    query: str
    start: float = 0.0
    end: float = 0.0
    step: float | None = None


@dataclass(frozen=True, slots=True)
class _Entry:
    result: _Result
    expires: float


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Enricher:
    """Adds cost context to alerts from Prometheus.

    `prometheus_url` (env PROMETHEUS_URL) overrides the rules' `prometheus.url`. `budgets`
    overrides the rules' `budgets.file`. `clock` (monotonic seconds) drives the cache;
    `wall_clock` is "now" for budget exhaustion dates.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        prometheus_url: str | None = None,
        budgets: Budgets | None = None,
        wall_clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._clock = clock
        self._url = prometheus_url
        self._budgets = budgets
        self._wall_clock = wall_clock
        self._rules_budgets: Budgets | None = None
        self._cache: dict[_Key, _Entry] = {}
        self._inflight: dict[_Key, asyncio.Task[_Result]] = {}
        # Label names of the series each query returned last: tells whether a value
        # applies to an alert when the query fails or comes back empty.
        self._shapes: dict[str, frozenset[frozenset[str]]] = {}

    def prometheus_url(self, rules: Rules) -> str:
        return (self._url or rules.spec.prometheus.url).rstrip("/")

    async def enrich(self, rules: Rules, alerts: Sequence[Alert]) -> list[CostContext]:
        """The cost context of each alert, in order. Never raises; waits at most `timeout`.

        A value whose result has no series with label names the alert carries does not
        apply to the alert and is left out (a GPU value for a budget alert). Where several
        series match, the most specific one (most labels) wins, then the first in label
        order; they are not summed, since overlapping series would count twice.
        """
        if not alerts:
            return []
        try:
            return await self._enrich(rules, alerts)
        except Exception:
            log.exception("cost context failed; alerts go on without it")
            return [CostContext(unavailable=(("cost context", "internal error"),)) for _ in alerts]

    async def check_queries(self, rules: Rules) -> list[str]:
        """Run every context query once, bypassing the cache; one line per problem."""
        if not rules.context:
            return []
        url = self.prometheus_url(rules)
        limit = rules.spec.prometheus.timeout
        names = list(rules.context)
        results = await asyncio.gather(
            *(self._query(_Key(url, rules.context[name].query), limit) for name in names)
        )
        down = [r for r in results if isinstance(r, _Failure) and r.code == _UNREACHABLE]
        if down and len(down) == len(results):
            return [f"Prometheus unreachable at {_redact(url)}"]
        problems = []
        for name, result in zip(names, results, strict=True):
            if isinstance(result, _Failure):
                where = f" at {_redact(url)}" if result.code == _UNREACHABLE else ""
                problems.append(f"context.{name}: {result.reason}{where}")
        return problems

    async def aclose(self) -> None:
        """Cancel queries still in flight (at shutdown)."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _enrich(self, rules: Rules, alerts: Sequence[Alert]) -> list[CostContext]:
        url = self.prometheus_url(rules)
        instant = {name: _Key(url, spec.query) for name, spec in rules.context.items()}
        incident = [(name, spec) for name, spec in rules.context.items() if spec.incident_cost]
        windows: dict[tuple[int, str], tuple[_Key, float, float]] = {}
        for i, alert in enumerate(alerts):
            if alert.status != "resolved" or alert.ends_at is None:
                continue
            start = alert.starts_at.timestamp()
            end = max(alert.ends_at.timestamp(), start)
            for name, spec in incident:
                windows[i, name] = (_range_key(url, spec.query, start, end), start, end)
        keys = set(instant.values()) | {key for key, _, _ in windows.values()}
        results = await self._results(keys, rules.spec.prometheus)

        budgets = self._budgets_for(rules)
        if budgets is not None:
            budgets[0].refresh()
        now = self._wall_clock()
        # Per value, once per call: its result, its join (result label -> alert label).
        lookups = [
            (name, spec, results[instant[name]], {res: a for a, res in spec.join.items()})
            for name, spec in rules.context.items()
        ]
        joins = {name: join for name, _, _, join in lookups}
        titles = {name: _title(name, spec) for name, spec in rules.context.items()}
        unavailable: dict[str, int] = {}
        contexts = []
        for i, alert in enumerate(alerts):
            values: list[ContextValue] = []
            missing: list[tuple[str, _Failure]] = []
            for name, spec, result, join in lookups:
                found = self._lookup(spec, result, alert.labels, join)
                if found is None:
                    continue
                if isinstance(found, _Failure):
                    missing.append((name, found))
                    continue
                value = found.points[-1][1]
                if not math.isfinite(value):
                    missing.append((name, _NOT_A_NUMBER))
                    continue
                values.append(ContextValue(name, titles[name], value, spec.unit))
            if budgets is not None:
                book, label = budgets
                budget = book.get(alert.labels.get(label, ""))
                if budget is not None:
                    numbers = {v.name: v.value for v in values}
                    values.extend(budget_values(budget, numbers, now))
            for name, spec in incident:
                if (i, name) not in windows:
                    continue
                key, start, end = windows[i, name]
                found = self._lookup(spec, results[key], alert.labels, joins[name])
                if found is None:
                    continue  # not this alert's cost; a later incident_cost value may be
                if isinstance(found, _Failure):
                    missing.append((INCIDENT_COST, found))
                else:
                    cost = _integrate(found.points, start, end, key.step or 1.0)
                    if cost is None:
                        missing.append((INCIDENT_COST, _NOT_A_NUMBER))
                    else:
                        values.append(ContextValue(INCIDENT_COST, "Incident cost", cost, Unit.USD))
                break
            for _, failure in missing:
                unavailable[failure.code] = unavailable.get(failure.code, 0) + 1
            contexts.append(
                CostContext(
                    values=tuple(values),
                    unavailable=tuple((name, failure.reason) for name, failure in missing),
                )
            )
        for code, count in unavailable.items():
            self._metrics.context_unavailable.labels(code).inc(count)
        return contexts

    async def _results(self, keys: Iterable[_Key], spec: PrometheusSpec) -> dict[_Key, _Result]:
        """Each query's result: cached, in flight (shared), or sent now; all within timeout."""
        loop = asyncio.get_running_loop()
        now = self._clock()
        if len(self._cache) > _SWEEP_AT:
            self._cache = {k: e for k, e in self._cache.items() if e.expires > now}
        results: dict[_Key, _Result] = {}
        waiting: dict[_Key, asyncio.Task[_Result]] = {}
        for key in keys:
            entry = self._cache.get(key)
            if entry is not None and entry.expires > now:
                results[key] = entry.result
                continue
            task = self._inflight.get(key)
            if task is None or task.get_loop() is not loop:
                task = loop.create_task(self._fetch(key, spec))
                self._inflight[key] = task
                task.add_done_callback(functools.partial(self._forget, key))
            waiting[key] = task
        if waiting:
            # Tasks still running at the deadline are not cancelled: other callers may share
            # them, and their answer (bounded by the same timeout) fills the cache.
            done, _ = await asyncio.wait(set(waiting.values()), timeout=spec.timeout)
            for key, task in waiting.items():
                if task in done and not task.cancelled():
                    results[key] = task.result()
                else:
                    results[key] = _timed_out(spec.timeout)
        return results

    async def _fetch(self, key: _Key, spec: PrometheusSpec) -> _Result:
        result = await self._query(key, spec.timeout)
        if isinstance(result, _Failure):
            ttl = min(spec.cache_ttl, NEGATIVE_TTL)
            log.warning("cost context query failed: %s: %s", key.query, result.reason)
        else:
            ttl = spec.cache_ttl
        self._cache[key] = _Entry(result, self._clock() + ttl)
        return result

    def _forget(self, key: _Key, task: asyncio.Task[_Result]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]

    async def _query(self, key: _Key, limit: float) -> _Result:
        """Send one query; count it; map every failure to a reason."""
        form = {"query": key.query, "timeout": f"{limit:g}"}
        if key.step is None:
            path = "/api/v1/query"
        else:
            path = "/api/v1/query_range"
            form.update(start=f"{key.start:.3f}", end=f"{key.end:.3f}", step=f"{key.step:g}")
        result: _Result
        try:
            response = await asyncio.wait_for(
                self._client.post(key.url + path, data=form, timeout=limit), limit
            )
        except (TimeoutError, httpx.TimeoutException):
            result = _timed_out(limit)
        except (httpx.TransportError, httpx.InvalidURL):
            result = _Failure(_UNREACHABLE, "Prometheus unreachable")
        else:
            result = _parse(response)
        outcome = "failure" if isinstance(result, _Failure) else "success"
        self._metrics.prometheus_queries.labels(outcome).inc()
        if not isinstance(result, _Failure) and result:
            self._shapes[key.query] = result.shapes
        return result

    def _lookup(
        self,
        spec: ContextSpec,
        result: _Result,
        labels: Mapping[str, str],
        to_alert: Mapping[str, str],
    ) -> _Series | _Failure | None:
        """This alert's series, why it has none, or None when the value does not apply.
        `to_alert` maps result label names to the alert's (the inverse of `join`)."""
        if isinstance(result, _Failure):
            return result if _applies(self._shapes.get(spec.query), labels, to_alert) else None
        if result:
            found = result.match(labels, to_alert)
            if isinstance(found, _Series):
                return found
            return _NO_DATA if found else None
        # No series at all: whether the value applies, from the shapes it had before.
        return _NO_DATA if _applies(self._shapes.get(spec.query), labels, to_alert) else None

    def _budgets_for(self, rules: Rules) -> tuple[Budgets, str] | None:
        label = rules.spec.budgets.service_label if rules.spec.budgets else "service"
        if self._budgets is not None:
            return self._budgets, label
        path = rules.budgets_path()
        if path is None:
            return None
        if self._rules_budgets is None or self._rules_budgets.path != path:
            self._rules_budgets = Budgets(path)
        return self._rules_budgets, label


_UNREACHABLE = "prometheus_unreachable"


def _applies(
    shapes: frozenset[frozenset[str]] | None, labels: Mapping[str, str], to_alert: Mapping[str, str]
) -> bool:
    """Whether some series shape can join this alert. Unknown shape: assume it applies."""
    if shapes is None:
        return True
    return any(all(to_alert.get(name, name) in labels for name in shape) for shape in shapes)


def _parse(response: httpx.Response) -> _Result:
    """Prometheus' JSON envelope -> series, or the error it names."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("status") not in ("success", "error"):
        if status >= 500:
            return _Failure(_UNREACHABLE, f"Prometheus unavailable (HTTP {status})")
        return _Failure("query_error", f"not a Prometheus answer (HTTP {status})")
    if body["status"] == "error":
        # Prometheus: errorType bad_data (400), execution (422), timeout/canceled (503).
        kind = str(body.get("errorType") or "error")
        text = str(body.get("error") or "")[:_MAX_ERROR_CHARS]
        return _Failure(
            "timeout" if kind == "timeout" else "query_error", f"query error: {kind}: {text}"
        )
    try:
        data = body["data"]
        kind = data["resultType"]
        result = data["result"]
        if kind == "vector":
            return _SeriesSet(
                _Series(
                    _labels(item["metric"]), ((float(item["value"][0]), float(item["value"][1])),)
                )
                for item in result
            )
        if kind == "scalar":
            return _SeriesSet((_Series({}, ((float(result[0]), float(result[1])),)),))
        if kind == "matrix":
            return _SeriesSet(
                _Series(
                    _labels(item["metric"]), tuple((float(t), float(v)) for t, v in item["values"])
                )
                for item in result
            )
    except (KeyError, TypeError, ValueError, IndexError):
        return _Failure("query_error", "malformed answer from Prometheus")
    return _Failure("query_error", f"unexpected result type {kind!r} (want a vector or scalar)")


def _labels(metric: Mapping[str, str]) -> dict[str, str]:
    return {k: str(v) for k, v in metric.items() if k != "__name__"}


def _timed_out(limit: float) -> _Failure:
    return _Failure("timeout", f"query timed out after {format_duration(limit)}")


def _title(name: str, spec: ContextSpec) -> str:
    return spec.title or name.replace("_", " ").capitalize()


def _range_key(url: str, query: str, start: float, end: float) -> _Key:
    """A range query covering [start, end] in at most ~MAX_POINTS steps.

    The window is widened to whole steps, so alerts with similar windows share one query.
    """
    wanted = (end - start) / MAX_POINTS
    step = next((float(s) for s in _STEPS if s >= wanted), None)
    if step is None:
        step = math.ceil(wanted / _DAY) * float(_DAY)
    first = math.floor(start / step) * step
    last = max(math.ceil(end / step) * step, first + step)
    return _Key(url, query, first, last, step)


def _integrate(
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
        return finite[0][1] * (end - start) / 3600
    total = 0.0
    for (t0, v0), (t1, v1) in pairwise(finite):
        if t1 - t0 > 1.5 * step:
            continue
        lo, hi = max(t0, start), min(t1, end)
        if hi <= lo:
            continue
        slope = (v1 - v0) / (t1 - t0)
        total += (v0 + slope * (lo - t0) + v0 + slope * (hi - t0)) / 2 * (hi - lo)
    return total / 3600


def _redact(url: str) -> str:
    """The URL without user:password, for messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
