"""A real Prometheus for tests, scraping a local exporter whose values the test controls.

Fixtures:
- `exporter` (session): serves the platform's metrics on a loopback port;
  `exporter.set("service_cost_per_hour", {"service": "x"}, 61.5)`, `.remove(...)`.
- `prometheus` (session): Debian's `prometheus` on a free port, scraping `exporter` every
  1s; `prometheus.sync()` waits until a scrape taken after the call has landed, so values
  set before it are queryable. `.stop()` / `.start()` mid-test; data survives a restart.
- `prometheus_factory`: start another Prometheus, e.g. with rule files.
- `start_backfilled(workdir, samples)` (a function, for fixtures of any scope): a Prometheus
  whose data dir holds history written with `promtool tsdb create-blocks-from openmetrics`
  before it starts: known series at known past times, for range queries.
- `hanging_server`: a "Prometheus" that accepts connections and never answers (timeouts);
  `tests.support.HangingServer`.
"""

from __future__ import annotations

import math
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from receiver.matchers import quote_value
from tests.support import HangingServer, free_port, require_binary, terminate, wait_until

SCRAPE_JOB = "cost"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class Exporter:
    """Serves gauges in Prometheus text format on /metrics; values change at runtime."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        self.scrapes = 0
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = exporter.render().encode()
                with exporter._lock:
                    exporter.scrapes += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"

    def set(self, name: str, labels: Mapping[str, str], value: float) -> None:
        with self._lock:
            self._values.setdefault(name, {})[tuple(sorted(labels.items()))] = value

    def remove(self, name: str, labels: Mapping[str, str]) -> None:
        with self._lock:
            self._values.get(name, {}).pop(tuple(sorted(labels.items())), None)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()

    def render(self) -> str:
        lines = []
        with self._lock:
            for name, series in sorted(self._values.items()):
                lines.append(f"# TYPE {name} gauge")
                for labels, value in sorted(series.items()):
                    # Label values are escaped as in matchers: backslash, quote, newline.
                    text = ",".join(f'{k}="{quote_value(v)}"' for k, v in labels)
                    lines.append(f"{name}{{{text}}} {_number(value)}")
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class PrometheusServer:
    """Debian's prometheus as a subprocess on a loopback port with its own data dir."""

    # Flags after the config, data dir and listen address; seconds to wait for a scrape.
    flags: tuple[str, ...] = ("--log.level=warn",)
    scrape_timeout = 15.0

    def __init__(
        self,
        binary: str,
        workdir: Path,
        targets: Sequence[str],
        rule_files: Sequence[Path] = (),
        scrape_interval: str = "1s",
    ) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = workdir / "data"
        self.log_path = workdir / "prometheus.log"
        self.config_path = workdir / "prometheus.yml"
        config = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [
                {"job_name": SCRAPE_JOB, "static_configs": [{"targets": list(targets)}]}
            ],
        }
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self._process: subprocess.Popen[bytes] | None = None
        self._client = httpx.Client(timeout=5.0)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, *, wait_for_scrape: bool = True) -> None:
        """Start and wait until ready and, by default, until its first scrape has landed.

        Prometheus applies scrape targets about 5s after it starts, so that takes ~5s.
        """
        assert not self.running, "Prometheus is already running"
        started = time.time()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.data_dir}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    *self.flags,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 20
        while not self._ready():
            if not self.running or time.monotonic() > deadline:
                self.stop()
                tail = self.log_path.read_text(errors="replace")[-2000:]
                pytest.fail(f"Prometheus did not become ready on {self.url}:\n{tail}")
            time.sleep(0.05)
        if wait_for_scrape:
            self._wait_for_scrape_after(started, timeout=self.scrape_timeout)

    def stop(self) -> None:
        """Terminate (graceful, flushes the WAL), then kill if it does not exit."""
        process, self._process = self._process, None
        if process is None:
            return
        terminate(process)

    def close(self) -> None:
        self.stop()
        self._client.close()

    def _ready(self) -> bool:
        try:
            return self._client.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result list (vector); fails the test on an error envelope."""
        response = self._client.post(f"{self.url}/api/v1/query", data={"query": promql})
        body = response.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def sync(self, timeout: float = 10.0) -> float:
        """Wait until a scrape that started after this call has been stored; return its time.

        Values the test set on the exporter before calling are then visible to queries.
        """
        self._wait_for_scrape_after(time.time(), timeout)
        return time.time()

    def _wait_for_scrape_after(self, after: float, timeout: float) -> None:
        # A sample's timestamp is the time its scrape started.
        def scraped_after() -> bool:
            result = self.query(f'timestamp(up{{job="{SCRAPE_JOB}"}})')
            return bool(result) and float(result[0]["value"][1]) > after

        wait_until(scraped_after, timeout=timeout)

    def http_requests(self, handler: str) -> float:
        """Requests Prometheus has served on `handler` (e.g. /api/v1/query), all codes."""
        text = self._client.get(f"{self.url}/metrics").text
        total = 0.0
        for line in text.splitlines():
            if line.startswith("prometheus_http_requests_total{") and (
                f'handler="{handler}"' in line
            ):
                total += float(line.rsplit(" ", 1)[1])
        return total


@pytest.fixture(scope="session", name="exporter")
def exporter_fixture() -> Iterator[Exporter]:
    server = Exporter()
    yield server
    server.close()


@pytest.fixture(scope="session", name="prometheus")
def prometheus_fixture(
    exporter: Exporter, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    binary = require_binary("prometheus")
    server = PrometheusServer(binary, tmp_path_factory.mktemp("prometheus"), [exporter.target])
    server.start()
    yield server
    server.close()


@pytest.fixture(name="prometheus_factory")
def prometheus_factory_fixture(
    exporter: Exporter, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., PrometheusServer]]:
    """`start(rule_files=[...])` -> a new running PrometheusServer, stopped after the test.

    `wait_for_scrape=False` returns as soon as it is ready (~0.2s instead of ~5s).
    """
    binary = require_binary("prometheus")
    started: list[PrometheusServer] = []

    def start(rule_files: Sequence[Path] = (), *, wait_for_scrape: bool = True) -> PrometheusServer:
        server = PrometheusServer(
            binary, tmp_path_factory.mktemp("prometheus"), [exporter.target], rule_files
        )
        started.append(server)
        server.start(wait_for_scrape=wait_for_scrape)
        return server

    yield start
    for server in started:
        server.close()


Sample = tuple[str, Mapping[str, str], float, float]  # name, labels, unix time, value


def openmetrics(samples: Sequence[Sample]) -> str:
    """`samples` as OpenMetrics text (gauges), grouped by metric as the format requires."""
    by_name: dict[str, list[Sample]] = {}
    for sample in samples:
        by_name.setdefault(sample[0], []).append(sample)
    lines = []
    for name, group in by_name.items():
        lines.append(f"# TYPE {name} gauge")
        for _, labels, at, value in sorted(group, key=lambda s: (sorted(s[1].items()), s[2])):
            text = ",".join(f'{k}="{quote_value(v)}"' for k, v in sorted(labels.items()))
            lines.append(f"{name}{{{text}}} {_number(value)} {at:.3f}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


class BackfilledPrometheus(PrometheusServer):
    """A Prometheus that keeps a year of data (the default 15 days would drop history)."""

    flags = ("--log.level=warn", "--storage.tsdb.retention.time=1y")


def start_backfilled(workdir: Path, samples: Sequence[Sample]) -> PrometheusServer:
    """A running Prometheus whose data dir holds `samples`, written by promtool before it
    starts, and nothing else (no scrape targets). Skipped without the binaries."""
    server = BackfilledPrometheus(require_binary("prometheus"), workdir, [])
    source = workdir / "history.om"
    source.write_text(openmetrics(samples), encoding="utf-8")
    server.data_dir.mkdir(parents=True, exist_ok=True)
    promtool = require_binary("promtool")
    command = [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source)]
    subprocess.run([*command, str(server.data_dir)], check=True, capture_output=True)
    server.start(wait_for_scrape=False)
    return server


@pytest.fixture(name="hanging_server")
def hanging_server_fixture() -> Iterator[HangingServer]:
    server = HangingServer()
    yield server
    server.close()
