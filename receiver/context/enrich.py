"""Cost context from Prometheus: the rules' context queries, joined to alerts.

Each value under `context:` is a PromQL instant query (`receiver.context.prometheus`),
fetched once per `cache_ttl` for every alert of a storm (`cache`) and joined to each
alert on shared labels (`join`); budgets add the budget and its exhaustion date
(`budgets`), and a resolved alert gets its incident cost (`incident`). Failures cost only
the context: the alert gets an `unavailable` entry with a reason, `enrich` never raises
and never waits longer than the rules' `timeout`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import httpx

from receiver.config.rules import Rules
from receiver.config.schema import ContextSpec
from receiver.config.secrets import redact_url
from receiver.context.budgets import Budgets, budget_values
from receiver.context.cache import QueryCache
from receiver.context.incident import INCIDENT_COST, incident_cost, windows
from receiver.context.join import lookup
from receiver.context.prometheus import NOT_A_NUMBER, Failure, PrometheusClient, Query
from receiver.metrics import Metrics
from receiver.models import Alert, ContextFailure, ContextValue, CostContext

log = logging.getLogger("alert_router.context")


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
        self._metrics = metrics
        self._prometheus = PrometheusClient(client, metrics)
        self._cache = QueryCache(self._prometheus, clock)
        self._url = prometheus_url
        self._budgets = budgets
        self._wall_clock = wall_clock
        self._rules_budgets: Budgets | None = None

    def prometheus_url(self, rules: Rules) -> str:
        return (self._url or rules.spec.prometheus.url).rstrip("/")

    async def enrich(self, rules: Rules, alerts: Sequence[Alert]) -> list[CostContext]:
        """The cost context of each alert, in order. Never raises; waits at most `timeout`.

        A value whose result has no series for the alert's labels is left out or marked
        unavailable, as `receiver.context.join` decides.
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
            *(
                self._prometheus.query(Query(url, rules.context[name].query), limit)
                for name in names
            )
        )
        down = [
            r for r in results if isinstance(r, Failure) and r.code is ContextFailure.UNREACHABLE
        ]
        if down and len(down) == len(results):
            return [f"Prometheus unreachable at {redact_url(url)}"]
        problems = []
        for name, result in zip(names, results, strict=True):
            if isinstance(result, Failure):
                unreachable = result.code is ContextFailure.UNREACHABLE
                where = f" at {redact_url(url)}" if unreachable else ""
                problems.append(f"context.{name}: {result.reason}{where}")
        return problems

    async def aclose(self) -> None:
        """Cancel queries still in flight (at shutdown)."""
        await self._cache.aclose()

    async def _enrich(self, rules: Rules, alerts: Sequence[Alert]) -> list[CostContext]:
        url = self.prometheus_url(rules)
        instant = {name: Query(url, spec.query) for name, spec in rules.context.items()}
        incidents = [windows(url, rules, alert) for alert in alerts]
        queries = set(instant.values()) | {w.query for ws in incidents for w in ws}
        results = await self._cache.results(queries, rules.spec.prometheus)

        budgets = self._budgets_for(rules)
        if budgets is not None:
            budgets[0].refresh()
        now = self._wall_clock()
        # Per value, once per call: its result, its join (result label -> alert label).
        lookups = [
            (
                name,
                spec,
                results[instant[name]],
                {res: a for a, res in spec.join.items()},
                self._cache.shapes(spec.query),
            )
            for name, spec in rules.context.items()
        ]
        joins = {name: join for name, _, _, join, _ in lookups}
        titles = {name: _title(name, spec) for name, spec in rules.context.items()}
        unavailable: dict[ContextFailure, int] = {}
        contexts = []
        for alert, alert_incidents in zip(alerts, incidents, strict=True):
            values: list[ContextValue] = []
            missing: list[tuple[str, Failure]] = []
            for name, spec, result, join, shapes in lookups:
                found = lookup(result, shapes, alert.labels, join)
                if found is None:
                    continue
                if isinstance(found, Failure):
                    missing.append((name, found))
                    continue
                value = found.points[-1][1]
                if not math.isfinite(value):
                    missing.append((name, NOT_A_NUMBER))
                    continue
                values.append(ContextValue(name, titles[name], value, spec.unit))
            if budgets is not None:
                book, label = budgets
                budget = book.get(alert.labels.get(label, ""))
                if budget is not None:
                    numbers = {v.name: v.value for v in values}
                    values.extend(budget_values(budget, numbers, now))
            for window in alert_incidents:
                shapes = self._cache.shapes(window.spec.query)
                found = lookup(results[window.query], shapes, alert.labels, joins[window.name])
                if found is None:
                    continue  # not this alert's cost; a later incident_cost value may be
                cost = found if isinstance(found, Failure) else incident_cost(window, found)
                if isinstance(cost, Failure):
                    missing.append((INCIDENT_COST, cost))
                else:
                    values.append(cost)
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


def _title(name: str, spec: ContextSpec) -> str:
    return spec.title or name.replace("_", " ").capitalize()
