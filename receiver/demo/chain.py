"""The real chain behind `alert-router demo`, when Prometheus and Alertmanager are installed.

A small built-in exporter serves the GPU platform's metrics with sample values that make
the five seed cost alerts fire; Prometheus (Debian's `prometheus`) scrapes it and evaluates
the shipped rules/prometheus/cost-alerts.yaml (every `for:` shortened to 1s, evaluated every
second); two Alertmanagers (Debian's `prometheus-alertmanager`, an HA pair with gossip off,
so each sends its own copy) post them to alert-router with its bearer token. Every program
runs on a free loopback port with its state in a temporary directory, and is stopped at
the end.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

PROMETHEUS = "prometheus"
# Debian names the Alertmanager binary after its package; upstream calls it alertmanager.
ALERTMANAGERS = ("prometheus-alertmanager", "alertmanager")
RECEIVER = "alert-router"


@dataclass(frozen=True)
class Binaries:
    prometheus: str
    alertmanager: str
    promtool: str | None = None  # for the report's history (receiver.demo.history)


def find_binaries() -> Binaries | None:
    """The installed Prometheus and Alertmanager, or None when either is missing."""
    prometheus = shutil.which(PROMETHEUS)
    alertmanager = next((p for p in map(shutil.which, ALERTMANAGERS) if p), None)
    if prometheus is None or alertmanager is None:
        return None
    return Binaries(prometheus, alertmanager, shutil.which("promtool"))


def alert_rules_for(routes: Path) -> Path:
    """The Prometheus alert rules shipped next to the routing rules."""
    return routes.parent / "prometheus" / "cost-alerts.yaml"


# -- the platform's metrics ------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One series of the platform's exporters: its value while the alerts fire, and after
    the platform recovers."""

    metric: str
    labels: Mapping[str, str]
    firing: float
    resolved: float


_STT = {"service": "whisper-pyannote-stt", "namespace": "ai-models"}
_LIPSYNC = {"service": "wav2lip-lipsync", "namespace": "ai-models"}

# Values for the five seed alerts, one each: whisper-pyannote-stt over 80% of its budget
# and at $0.72 per job, wav2lip-lipsync at $61.50/hour, and GPU 1 of gpu-node-3 idle (0%,
# hence also under 30%) while a pod holds it.
SAMPLES: tuple[Sample, ...] = (
    Sample("budget_utilization_percentage", _STT, 92.0, 61.0),
    Sample("budget_utilization_percentage", _LIPSYNC, 47.0, 47.0),
    Sample("service_cost_per_hour", _STT, 20.5, 20.5),
    Sample("service_cost_per_hour", _LIPSYNC, 61.5, 38.0),
    Sample("monthly_cost_projection", _STT, 14_760.0, 14_760.0),
    Sample("monthly_cost_projection", _LIPSYNC, 44_280.0, 27_360.0),
    Sample(
        "cost_per_job", {"service": "whisper-pyannote-stt", "queue_name": "transcribe"}, 0.72, 0.41
    ),
    Sample("cost_per_job", {"service": "wav2lip-lipsync", "queue_name": "lipsync"}, 0.35, 0.35),
    Sample("redis_queue_depth", {"queue_name": "transcribe", "queue_type": "pending"}, 42, 3),
    Sample(
        "DCGM_FI_DEV_GPU_UTIL",
        {
            "Hostname": "gpu-node-2",
            "gpu": "0",
            "pod": "wav2lip-lipsync-7d9f",
            "namespace": "ai-models",
        },
        78.0,
        81.0,
    ),
    Sample(
        "DCGM_FI_DEV_GPU_UTIL",
        {
            "Hostname": "gpu-node-3",
            "gpu": "1",
            "pod": "whisper-batch-5c2a",
            "namespace": "ai-models",
        },
        0.0,
        64.0,
    ),
    Sample(
        "gpu_cost_per_hour",
        {"node": "gpu-node-2", "instance_type": "g5.xlarge", "gpu_type": "A10G"},
        1.21,
        1.21,
    ),
    Sample(
        "gpu_cost_per_hour",
        {"node": "gpu-node-3", "instance_type": "g5.2xlarge", "gpu_type": "A10G"},
        4.1,
        4.1,
    ),
)


def escape_label(value: str) -> str:
    """A label value as the text format quotes it."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Exporter:
    """Serves the samples in Prometheus' text format on /metrics, in a thread."""

    def __init__(self, samples: Sequence[Sample] = SAMPLES) -> None:
        self._samples = tuple(samples)
        self._phase = "firing"
        self._lock = threading.Lock()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404)
                    return
                body = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.target = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> Exporter:
        self._thread.start()
        return self

    def recover(self) -> None:
        """Serve the values of a platform that has recovered: the alerts resolve."""
        with self._lock:
            self._phase = "resolved"

    def render(self) -> str:
        with self._lock:
            phase = self._phase
        lines: list[str] = []
        for name in dict.fromkeys(s.metric for s in self._samples):
            lines.append(f"# TYPE {name} gauge")
            for sample in self._samples:
                if sample.metric != name:
                    continue
                labels = ",".join(f'{k}="{escape_label(v)}"' for k, v in sample.labels.items())
                value = sample.firing if phase == "firing" else sample.resolved
                lines.append(f"{name}{{{labels}}} {value!r}")
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()


# -- Prometheus and Alertmanager ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def shortened_rules(source: Path, target: Path) -> Path:
    """A copy of the alert rules with every `for:` at 1s, evaluated every second, so the
    demo's alerts fire within seconds instead of after 5 minutes to an hour."""
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    for group in data["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    target.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return target


class ChainError(RuntimeError):
    """A program of the chain did not start; the message includes its log."""


class _Program:
    """A subprocess on a loopback port, its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], port: int, log: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        with self.log.open("ab") as out:
            self._process = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as client:
            while True:
                try:
                    if client.get(f"{self.url}/-/ready").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    tail = self.log.read_text(errors="replace")[-1500:]
                    raise ChainError(f"{self.name} did not start on {self.url}:\n{tail}")
                time.sleep(0.1)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


class Chain:
    """Exporter -> Prometheus -> two Alertmanagers -> `webhook_url`, in `workdir`."""

    def __init__(
        self,
        binaries: Binaries,
        workdir: Path,
        alert_rules: Path,
        webhook_url: str,
        token: str,
        prometheus_port: int | None = None,
    ) -> None:
        self.exporter = Exporter()
        self._workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        prometheus_port = prometheus_port or free_port()
        alertmanager_ports = (free_port(), free_port())
        self.prometheus_url = f"http://127.0.0.1:{prometheus_port}"
        self.prometheus_data = workdir / "prometheus-data"
        rules = shortened_rules(alert_rules, workdir / "cost-alerts.yaml")
        token_file = workdir / "webhook-token"
        token_file.write_text(token, encoding="utf-8")
        token_file.chmod(0o600)

        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [
                {"job_name": "cost", "static_configs": [{"targets": [self.exporter.target]}]}
            ],
            "alerting": {
                "alertmanagers": [
                    {
                        "static_configs": [
                            {"targets": [f"127.0.0.1:{port}" for port in alertmanager_ports]}
                        ]
                    }
                ]
            },
        }
        prometheus_config = workdir / "prometheus.yml"
        prometheus_config.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        self.prometheus = _Program(
            "Prometheus",
            [
                binaries.prometheus,
                f"--config.file={prometheus_config}",
                f"--storage.tsdb.path={self.prometheus_data}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
                f"--web.external-url={self.prometheus_url}",  # graph links that open
                "--rules.alert.resend-delay=1s",
                "--log.level=error",
            ],
            prometheus_port,
            workdir / "prometheus.log",
        )
        self.alertmanagers = [
            self._alertmanager(binaries.alertmanager, i, port, webhook_url, token_file)
            for i, port in enumerate(alertmanager_ports)
        ]

    def _alertmanager(
        self, binary: str, index: int, port: int, webhook_url: str, token_file: Path
    ) -> _Program:
        config = {
            "route": {
                "receiver": RECEIVER,
                "group_by": ["..."],
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [
                {
                    "name": RECEIVER,
                    "webhook_configs": [
                        {
                            "url": webhook_url,
                            "send_resolved": True,
                            "max_alerts": 0,
                            "http_config": {
                                "authorization": {
                                    "type": "Bearer",
                                    "credentials_file": str(token_file),
                                }
                            },
                        }
                    ],
                }
            ],
        }
        path = self._workdir / f"alertmanager-{index}.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        return _Program(
            f"Alertmanager {index + 1}",
            [
                binary,
                f"--config.file={path}",
                f"--storage.path={self._workdir / f'alertmanager-{index}-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--web.external-url=http://127.0.0.1:{port}",
                "--cluster.listen-address=",  # gossip off: each peer sends its own copy
                "--log.level=error",
            ],
            port,
            self._workdir / f"alertmanager-{index}.log",
        )

    def start(self) -> None:
        """Start everything (blocking: run it in a thread next to an event loop)."""
        self.exporter.start()
        for alertmanager in self.alertmanagers:
            alertmanager.start()
        self.prometheus.start()

    def stop(self) -> None:
        self.prometheus.stop()
        for alertmanager in self.alertmanagers:
            alertmanager.stop()
        self.exporter.close()
