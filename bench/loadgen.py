"""Load from a separate process: constant-rate (wrk2-like) and burst webhook senders.

`python -m bench.loadgen SPEC_JSON` prints one JSON line with the result.

- `constant`: requests are scheduled at fixed times (`rate` per second); latency is measured
  from the *scheduled* time to the end of the answer, so a slow answer cannot hide the
  requests that should have been sent meanwhile (no coordinated omission). A request whose
  time has come while every open connection is busy opens another connection.
- `burst`: `count` webhooks sent as fast as `concurrency` connections allow.

Both record, when asked, the wall-clock time each webhook was acknowledged, so end-to-end
delays can be computed against what the PagerDuty and Slack servers received.

The HTTP/1.1 client is a few lines over asyncio streams (keep-alive, Content-Length bodies):
cheap enough that the generator's own overhead stays far below the latencies it measures.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bench.payloads import webhook


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(self, data: bytes) -> tuple[int, bytes]:
        self.writer.write(data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    def close(self) -> None:
        self.writer.close()


@dataclass
class _Pool:
    host: str
    port: int
    idle: list[_Conn] = field(default_factory=list)
    opened: int = 0

    async def get(self) -> _Conn:
        if self.idle:
            return self.idle.pop()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.opened += 1
        return _Conn(reader, writer)

    def put(self, conn: _Conn) -> None:
        self.idle.append(conn)

    def close(self) -> None:
        for conn in self.idle:
            conn.close()


def _request_bytes(host: str, port: int, path: str, token: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "count": len(ms),
        "p50_ms": round(_percentile(ms, 50), 3),
        "p90_ms": round(_percentile(ms, 90), 3),
        "p99_ms": round(_percentile(ms, 99), 3),
        "p999_ms": round(_percentile(ms, 99.9), 3),
        "max_ms": round(max(ms), 3) if ms else float("nan"),
    }


class _Outcome:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.lags: list[float] = []
        self.statuses: dict[str, int] = {}
        self.accepted = 0
        self.duplicates = 0
        self.errors: list[str] = []
        # [index of the webhook, wall time acknowledged, HTTP status]
        self.acks: list[tuple[int, float, int]] = []

    def record(self, index: int, status: int, body: bytes) -> None:
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
        self.acks.append((index, time.time(), status))
        if status == 200:
            try:
                answer = json.loads(body)
            except ValueError:
                return
            self.accepted += int(answer.get("accepted", 0))
            self.duplicates += int(answer.get("duplicates", 0))


async def _send(pool: _Pool, data: bytes, index: int, outcome: _Outcome) -> bool:
    try:
        conn = await pool.get()
    except OSError as exc:
        outcome.errors.append(f"connect: {exc}")
        return False
    try:
        status, body = await conn.request(data)
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        conn.close()
        outcome.errors.append(f"{type(exc).__name__}: {exc}")
        return False
    pool.put(conn)
    outcome.record(index, status, body)
    return True


async def constant(spec: dict[str, Any]) -> dict[str, Any]:
    url = urlsplit(spec["url"])
    host, port = url.hostname or "127.0.0.1", url.port or 80
    rate, duration, per = float(spec["rate"]), float(spec["duration"]), int(spec.get("per", 1))
    total = int(rate * duration)
    first = int(spec.get("first", 0))
    bodies = [
        _request_bytes(
            host,
            port,
            url.path,
            spec["token"],
            webhook(spec["profile"], spec["nonce"], first + i * per, per),
        )
        for i in range(total)
    ]
    pool = _Pool(host, port)
    for _ in range(int(spec.get("connections", 8))):
        pool.put(await pool.get())
    outcome = _Outcome()

    # perf_counter, not loop.time(): uvloop's clock has millisecond resolution.
    clock = time.perf_counter

    async def fire(index: int, at: float) -> None:
        outcome.lags.append(clock() - at)
        if await _send(pool, bodies[index], index, outcome):
            outcome.latencies.append(clock() - at)

    tasks: list[asyncio.Task[None]] = []
    start = clock() + 0.05
    for index in range(total):
        at = start + index / rate
        delay = at - clock()
        if delay > 0:
            # Timers fire up to a millisecond late: `send_lag` reports it, and it counts
            # against the router since latency runs from the scheduled time.
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(index, at)))
    await asyncio.gather(*tasks)
    elapsed = clock() - start
    pool.close()
    return {
        "mode": "constant",
        "rate": rate,
        "duration_s": duration,
        "sent": total,
        "achieved_rate": round(total / elapsed, 1),
        "latency": summary_ms(outcome.latencies),
        # How late the generator itself started requests (included in `latency`).
        "send_lag": summary_ms(outcome.lags),
        "connections_opened": pool.opened,
        "statuses": outcome.statuses,
        "accepted": outcome.accepted,
        "duplicates": outcome.duplicates,
        "errors": outcome.errors[:5],
        "error_count": len(outcome.errors),
        "acks": outcome.acks if spec.get("record_acks") else [],
    }


async def burst(spec: dict[str, Any]) -> dict[str, Any]:
    url = urlsplit(spec["url"])
    host, port = url.hostname or "127.0.0.1", url.port or 80
    per, count = int(spec["per"]), int(spec["count"])
    first = int(spec.get("first", 0))
    bodies = [
        _request_bytes(
            host,
            port,
            url.path,
            spec["token"],
            webhook(spec["profile"], spec["nonce"], first + i * per, per),
        )
        for i in range(count)
    ]
    pool = _Pool(host, port)
    outcome = _Outcome()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)

    async def worker() -> None:
        while not queue.empty():
            index = queue.get_nowait()
            sent = time.perf_counter()
            if await _send(pool, bodies[index], index, outcome):
                outcome.latencies.append(time.perf_counter() - sent)

    started_wall = time.time()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(int(spec.get("concurrency", 4)))))
    elapsed = time.perf_counter() - started
    pool.close()
    return {
        "mode": "burst",
        "webhooks": count,
        "alerts_per_webhook": per,
        "started_wall": started_wall,
        "elapsed_s": round(elapsed, 4),
        "alerts_per_s": round(count * per / elapsed, 1),
        "latency": summary_ms(outcome.latencies),
        "statuses": outcome.statuses,
        "accepted": outcome.accepted,
        "duplicates": outcome.duplicates,
        "errors": outcome.errors[:5],
        "error_count": len(outcome.errors),
        "acks": outcome.acks if spec.get("record_acks") else [],
    }


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    runner = constant if spec["mode"] == "constant" else burst
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        pass
    with asyncio.Runner(loop_factory=factory) as loop:
        result = loop.run(runner(spec))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
