"""The Prometheus HTTP API client: instant and range queries, every failure a reason.

Queries are POSTed as forms (`/api/v1/query`, `/api/v1/query_range`), so a long PromQL
expression never meets a URL length limit. Nothing here raises for a failed query: a
timeout, a refused connection, an error envelope or a malformed answer each becomes a
`Failure` whose code is a `ContextFailure` (the label of
`alert_router_context_unavailable_total`) and whose text is shown beside the alert.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from receiver.config.durations import format_duration
from receiver.metrics import Metrics
from receiver.models import ContextFailure

# Prometheus' error texts can quote a whole query; the alert shows only this much of one.
MAX_ERROR_CHARS = 300


@dataclass(frozen=True, slots=True)
class Query:
    """A query to send: instant when `step` is None, else a range query over
    [start, end] (unix seconds) every `step` seconds."""

    url: str
    query: str
    start: float = 0.0
    end: float = 0.0
    step: float | None = None


@dataclass(frozen=True, slots=True)
class Series:
    """One result series: labels (without `__name__`) and (unix time, value) points."""

    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a value is missing: its reason code and a text for people."""

    code: ContextFailure
    reason: str


UNREACHABLE = Failure(ContextFailure.UNREACHABLE, "Prometheus unreachable")
NO_DATA = Failure(ContextFailure.NO_DATA, "no data")
NOT_A_NUMBER = Failure(ContextFailure.NOT_A_NUMBER, "not a number")


def timed_out(limit: float) -> Failure:
    return Failure(ContextFailure.TIMEOUT, f"query timed out after {format_duration(limit)}")


class PrometheusClient:
    """Sends queries on a shared `httpx.AsyncClient`; counts each by outcome."""

    def __init__(self, client: httpx.AsyncClient, metrics: Metrics) -> None:
        self._client = client
        self._metrics = metrics

    async def query(self, query: Query, limit: float) -> tuple[Series, ...] | Failure:
        """Send `query`, waiting at most `limit` seconds (Prometheus is told the same
        `timeout`, so it gives up on its side too)."""
        form = {"query": query.query, "timeout": f"{limit:g}"}
        if query.step is None:
            path = "/api/v1/query"
        else:
            path = "/api/v1/query_range"
            form.update(start=f"{query.start:.3f}", end=f"{query.end:.3f}", step=f"{query.step:g}")
        result: tuple[Series, ...] | Failure
        try:
            response = await asyncio.wait_for(
                self._client.post(query.url + path, data=form, timeout=limit), limit
            )
        except (TimeoutError, httpx.TimeoutException):
            result = timed_out(limit)
        except (httpx.TransportError, httpx.InvalidURL):
            result = UNREACHABLE
        else:
            result = parse(response)
        outcome = "failure" if isinstance(result, Failure) else "success"
        self._metrics.prometheus_queries.labels(outcome).inc()
        return result


def parse(response: httpx.Response) -> tuple[Series, ...] | Failure:
    """Prometheus' JSON envelope -> series, or the error it names."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("status") not in ("success", "error"):
        if status >= 500:
            return Failure(ContextFailure.UNREACHABLE, f"Prometheus unavailable (HTTP {status})")
        return Failure(ContextFailure.QUERY_ERROR, f"not a Prometheus answer (HTTP {status})")
    if body["status"] == "error":
        # Prometheus: errorType bad_data (400), execution (422), timeout/canceled (503).
        kind = str(body.get("errorType") or "error")
        text = str(body.get("error") or "")[:MAX_ERROR_CHARS]
        code = ContextFailure.TIMEOUT if kind == "timeout" else ContextFailure.QUERY_ERROR
        return Failure(code, f"query error: {kind}: {text}")
    try:
        data = body["data"]
        kind = data["resultType"]
        result = data["result"]
        if kind == "vector":
            return tuple(
                Series(
                    _labels(item["metric"]), ((float(item["value"][0]), float(item["value"][1])),)
                )
                for item in result
            )
        if kind == "scalar":
            return (Series({}, ((float(result[0]), float(result[1])),)),)
        if kind == "matrix":
            return tuple(
                Series(
                    _labels(item["metric"]), tuple((float(t), float(v)) for t, v in item["values"])
                )
                for item in result
            )
    except (KeyError, TypeError, ValueError, IndexError):
        return Failure(ContextFailure.QUERY_ERROR, "malformed answer from Prometheus")
    return Failure(
        ContextFailure.QUERY_ERROR, f"unexpected result type {kind!r} (want a vector or scalar)"
    )


def _labels(metric: Mapping[str, str]) -> dict[str, str]:
    return {k: str(v) for k, v in metric.items() if k != "__name__"}
