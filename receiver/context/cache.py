"""Batched, cached, single-flight queries: what keeps a storm cheap for Prometheus.

One request per distinct query per `cache_ttl` serves every alert of a storm, and
concurrent callers share one in-flight request, so a storm costs O(context values)
queries, not O(alerts). A failed query is remembered too, for min(cache_ttl,
`NEGATIVE_TTL`), so an outage does not turn a storm into a query per alert.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from receiver.config.schema import PrometheusSpec
from receiver.context.join import Result, SeriesSet, Shapes
from receiver.context.prometheus import Failure, PrometheusClient, Query, timed_out

log = logging.getLogger("alert_router.context")

# A failed query is retried at most this often (or every cache_ttl, if shorter), so a storm
# during an outage does not send one query per alert.
NEGATIVE_TTL = 5.0
# Expired entries are swept once the cache holds more than this many. Each distinct
# incident window adds a range query, so entries pile up; a sweep on every call would
# cost a pass over the cache per batch of a storm.
_SWEEP_AT = 512


@dataclass(frozen=True, slots=True)
class _Entry:
    result: Result
    expires: float


class QueryCache:
    """Results of queries by `Query`, fetched through `prometheus`. `clock`: monotonic
    seconds, for expiry."""

    def __init__(self, prometheus: PrometheusClient, clock: Callable[[], float]) -> None:
        self._prometheus = prometheus
        self._clock = clock
        self._cache: dict[Query, _Entry] = {}
        self._inflight: dict[Query, asyncio.Task[Result]] = {}
        # Label names of the series each query returned last: tells whether a value
        # applies to an alert when the query fails or comes back empty.
        self._shapes: dict[str, Shapes] = {}

    def shapes(self, query: str) -> Shapes | None:
        """The label names of the series `query` returned when it last returned some."""
        return self._shapes.get(query)

    async def results(self, queries: Iterable[Query], spec: PrometheusSpec) -> dict[Query, Result]:
        """Each query's result: cached, in flight (shared), or sent now; all within the
        rules' `timeout`."""
        loop = asyncio.get_running_loop()
        now = self._clock()
        if len(self._cache) > _SWEEP_AT:
            self._cache = {k: e for k, e in self._cache.items() if e.expires > now}
        results: dict[Query, Result] = {}
        waiting: dict[Query, asyncio.Task[Result]] = {}
        for query in queries:
            entry = self._cache.get(query)
            if entry is not None and entry.expires > now:
                results[query] = entry.result
                continue
            task = self._inflight.get(query)
            if task is None or task.get_loop() is not loop:
                task = loop.create_task(self._fetch(query, spec))
                self._inflight[query] = task
                task.add_done_callback(functools.partial(self._forget, query))
            waiting[query] = task
        if waiting:
            # Tasks still running at the deadline are not cancelled: other callers may share
            # them, and their answer (bounded by the same timeout) fills the cache.
            done, _ = await asyncio.wait(set(waiting.values()), timeout=spec.timeout)
            for query, task in waiting.items():
                if task in done and not task.cancelled():
                    results[query] = task.result()
                else:
                    results[query] = timed_out(spec.timeout)
        return results

    async def aclose(self) -> None:
        """Cancel queries still in flight (at shutdown)."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _fetch(self, query: Query, spec: PrometheusSpec) -> Result:
        answer = await self._prometheus.query(query, spec.timeout)
        result: Result
        if isinstance(answer, Failure):
            result, ttl = answer, min(spec.cache_ttl, NEGATIVE_TTL)
            log.warning(
                "cost context query failed",
                extra={"query": query.query, "reason": answer.code.value, "error": answer.reason},
            )
        else:
            result, ttl = SeriesSet(answer), spec.cache_ttl
            if result:
                self._shapes[query.query] = result.shapes
        self._cache[query] = _Entry(result, self._clock() + ttl)
        return result

    def _forget(self, query: Query, task: asyncio.Task[Result]) -> None:
        if self._inflight.get(query) is task:
            del self._inflight[query]
