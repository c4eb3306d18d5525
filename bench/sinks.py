"""The router's upstreams and downstreams, in their own process: PagerDuty, Slack, Prometheus.

`python -m bench.sinks WORKDIR` starts the tests' local PagerDuty and Slack webhook servers,
and Debian's Prometheus scraping a local exporter with the platform's cost metrics (or, when
`prometheus` is not installed, a tiny stand-in that answers every query with an empty vector
and counts). It prints one JSON line with the URLs, then answers one JSON command per line on
stdin with one JSON line on stdout:

- `{"cmd": "pagerduty", "nonce": N, "reset": bool}`: PagerDuty requests for alerts of run N,
  as [received (unix time), dedup_key, event_action, HTTP status]; `reset` empties the fake
  afterwards (its alert model is searched linearly, so a long run would slow it down).
- `{"cmd": "slack", "nonce": N}`: Slack webhook requests that mention alerts of run N, as
  [received (unix time), HTTP status, [fingerprints in the message]].
- `{"cmd": "slack_limit", "per_second": r, "burst": b}`: answer 429 past that rate, as Slack.
- `{"cmd": "prometheus"}`: queries Prometheus has served (instant and range).
- `{"cmd": "stop"}`.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.payloads import CHEAP_SERVICES, EXPENSIVE_SERVICES, GPUS_PER_NODE, NODES
from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.prometheus import Exporter, PrometheusServer
from tests.fakes.slack import SlackWebhookServer


class _FakePrometheus:
    """Answers /api/v1/query and /api/v1/query_range with an empty result, and counts."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                path = self.path.split("?", 1)[0]
                if path in ("/api/v1/query", "/api/v1/query_range"):
                    with fake._lock:
                        fake.count += 1
                    kind = "vector" if path.endswith("query") else "matrix"
                    body = json.dumps(
                        {"status": "success", "data": {"resultType": kind, "result": []}}
                    ).encode()
                    self.send_response(200)
                else:
                    body = b"{}"
                    self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def queries(self) -> float:
        with self._lock:
            return float(self.count)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _fill(exporter: Exporter) -> None:
    """The platform's cost metrics for every service and GPU the benchmark's alerts name."""
    for i, service in enumerate(CHEAP_SERVICES):
        labels = {"service": service, "namespace": "ai-models"}
        exporter.set("service_cost_per_hour", labels, 20.0 + 5 * i)
        exporter.set("monthly_cost_projection", labels, (20.0 + 5 * i) * 730)
        exporter.set("budget_utilization_percentage", labels, 60.0 + 3 * i)
        exporter.set("cost_per_job", {"service": service, "queue_name": f"{service}-q"}, 0.6)
        exporter.set("redis_queue_depth", {"queue_name": f"{service}-q", "queue_type": "job"}, 12)
    for i, service in enumerate(EXPENSIVE_SERVICES):
        labels = {"service": service, "namespace": "ai-models"}
        exporter.set("service_cost_per_hour", labels, 150.0 + 10 * i)
        exporter.set("monthly_cost_projection", labels, (150.0 + 10 * i) * 730)
        exporter.set("budget_utilization_percentage", labels, 95.0)
    for node in NODES:
        exporter.set(
            "gpu_cost_per_hour",
            {"node": node, "instance_type": "p4d.24xlarge", "gpu_type": "a100"},
            32.77,
        )
        for gpu in range(GPUS_PER_NODE):
            exporter.set("DCGM_FI_DEV_GPU_UTIL", {"Hostname": node, "gpu": str(gpu)}, 7.0 + gpu)


class Sinks:
    def __init__(self, workdir: Path) -> None:
        self.pagerduty = FakePagerDuty().start()
        self.slack = SlackWebhookServer().start()
        self.exporter: Exporter | None = None
        self.real: PrometheusServer | None = None
        self.fake: _FakePrometheus | None = None
        binary = shutil.which("prometheus")
        if binary is not None:
            self.exporter = Exporter()
            _fill(self.exporter)
            server = PrometheusServer(binary, workdir / "prometheus", [self.exporter.target])
            try:
                server.start()
                self.real = server
            except BaseException:  # pytest.fail raises a BaseException
                server.close()
        if self.real is None:
            self.fake = _FakePrometheus()

    def info(self) -> dict[str, Any]:
        return {
            "pagerduty_url": self.pagerduty.url,
            "slack_url": self.slack.url,
            "prometheus_url": self.real.url if self.real else self.fake.url if self.fake else "",
            "prometheus": "debian prometheus" if self.real else "stand-in (empty answers)",
        }

    def handle(self, command: dict[str, Any]) -> Any:
        name = command["cmd"]
        if name == "pagerduty":
            nonce = command["nonce"]
            events = [
                [r.received_wall, r.json.get("dedup_key", ""), r.json.get("event_action"), r.status]
                for r in self.pagerduty.wait_for_requests(0)
                if isinstance(r.json, dict) and str(r.json.get("dedup_key", "")).startswith(nonce)
            ]
            if command.get("reset"):
                self.pagerduty.reset()
            return {"events": events}
        if name == "slack":
            pattern = re.compile(re.escape(command["nonce"]) + "[0-9a-f]{10}")
            messages = []
            for r in self.slack.requests:
                found = sorted(set(pattern.findall(r.raw.decode("utf-8", "replace"))))
                if found:
                    messages.append([r.wall, r.status, found])
            return {"messages": messages}
        if name == "slack_limit":
            self.slack.limit_rate(command["per_second"], burst=command["burst"])
            return {}
        if name == "prometheus":
            if self.real is not None:
                served = self.real.http_requests("/api/v1/query") + self.real.http_requests(
                    "/api/v1/query_range"
                )
                return {"queries": served}
            assert self.fake is not None
            return {"queries": self.fake.queries()}
        raise ValueError(f"unknown command {name!r}")

    def close(self) -> None:
        self.pagerduty.stop()
        self.slack.stop()
        if self.real is not None:
            self.real.close()
        if self.exporter is not None:
            self.exporter.close()
        if self.fake is not None:
            self.fake.close()


def main(argv: list[str]) -> int:
    sinks = Sinks(Path(argv[0]))
    try:
        print(json.dumps(sinks.info()), flush=True)
        for line in sys.stdin:
            command = json.loads(line)
            if command["cmd"] == "stop":
                break
            try:
                answer = sinks.handle(command)
            except Exception as exc:  # reported to the orchestrator
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(answer), flush=True)
    finally:
        with contextlib.suppress(Exception):
            sinks.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
