"""The benchmark run: every process, phase and figure of `make bench`.

Processes (pinned when the machine has two or more cores):
- servers, core 0: alert-router (`python -m receiver serve`: uvicorn, one worker, SQLite store
  in a temporary directory, the real notifiers) and the bare Starlette endpoint (bench.bare);
- load, core 1: Debian's `wrk` (throughput, a Lua script makes every alert unique) and
  bench.loadgen (constant rate and bursts), each a separate process;
- sinks, core 1: bench.sinks, the tests' PagerDuty and Slack servers and Prometheus.

Phases, each repeated and reported as the median (every run is kept under `runs`):
1. single-alert webhooks, wrk against the bare endpoint and the router in turn;
2. 100-alert webhooks, wrk, alerts acknowledged per second;
3. acknowledgement latency at a constant 500 requests/s (bench.loadgen, from scheduled times);
4. end to end to PagerDuty: a burst of 100-alert webhooks, then a steady 100 alerts/s;
5. a 10,000-alert storm to mixed destinations on a second router with the shipped limits.
Between runs the router's queues are drained, so every run starts from the same state.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import yaml

from bench.loadgen import summary_ms
from bench.payloads import PAGERDUTY, SLACK, fingerprint, kind_of, wrk_script
from tests.fakes.pagerduty import ROUTING_KEY
from tests.fakes.slack import max_per_window, min_interval
from tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_RULES = ROOT / "rules" / "routes.yaml"
TOKEN = "bench-token-" + "0" * 20

TARGET_RATIO = 0.5
TARGET_BATCH_ALERTS_PER_S = 20_000
TARGET_P99_MS = 10.0
TARGET_RSS_MB = 150.0


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- processes ---------------------------------------------------------------------------


class Cpus:
    """Which cores the servers and the load run on (none pinned on a one-core machine)."""

    def __init__(self) -> None:
        available = sorted(os.sched_getaffinity(0))
        self.pinned = len(available) >= 2
        self.servers = available[:1] if self.pinned else available
        self.load = available[1:] if self.pinned else available
        self.taskset = shutil.which("taskset")

    def command(self, cmd: Sequence[str], cpus: Sequence[int]) -> list[str]:
        if self.pinned and self.taskset:
            return [self.taskset, "-c", ",".join(map(str, cpus)), *cmd]
        return list(cmd)

    def pin(self, pid: int, cpus: Sequence[int]) -> None:
        """For processes started without taskset: pin right after start."""
        if self.pinned and not self.taskset:
            os.sched_setaffinity(pid, set(cpus))


def _spawn(
    cpus: Cpus,
    cmd: Sequence[str],
    where: Sequence[int],
    *,
    env: dict[str, str] | None = None,
    stdout: int | IO[Any] | None = None,
    stdin: int | None = None,
) -> subprocess.Popen[Any]:
    proc = subprocess.Popen(
        cpus.command(cmd, where),
        cwd=ROOT,
        env=env,
        stdin=stdin,
        stdout=stdout,
        stderr=subprocess.STDOUT if stdout is not None else None,
        text=True,
    )
    cpus.pin(proc.pid, where)
    return proc


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_http(url: str, proc: subprocess.Popen[Any], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if _get(url, timeout=1.0)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready at {url} within {timeout}s")


class Sinks:
    """bench.sinks as a child process, driven by one JSON line per command."""

    def __init__(self, cpus: Cpus, workdir: Path) -> None:
        self.proc = _spawn(
            cpus,
            [sys.executable, "-m", "bench.sinks", str(workdir)],
            cpus.load,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.info: dict[str, Any] = self._read()

    def _read(self) -> Any:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("bench.sinks exited")
            if line.startswith("{"):
                return json.loads(line)

    def call(self, cmd: str, **args: Any) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()
        answer = self._read()
        if isinstance(answer, dict) and "error" in answer:
            raise RuntimeError(f"bench.sinks {cmd}: {answer['error']}")
        return answer

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write('{"cmd": "stop"}\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                _stop(self.proc)


class Bare:
    def __init__(self, cpus: Cpus, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/alerts"
        self._log = (workdir / "bare.log").open("w")
        self.proc = _spawn(
            cpus,
            [sys.executable, "-m", "bench.bare", str(self.port)],
            cpus.servers,
            stdout=self._log,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                # Any answer (405 for GET) means it is listening.
                _get(f"http://127.0.0.1:{self.port}/alerts", timeout=1.0)
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("bench.bare did not start") from None
                time.sleep(0.05)

    def close(self) -> None:
        _stop(self.proc)
        self._log.close()


def _rules(pagerduty_per_minute: float, slack_per_second: float | None) -> str:
    """The shipped rules with the destinations' rate limits set for a measurement."""
    rules = yaml.safe_load(SHIPPED_RULES.read_text(encoding="utf-8"))
    for spec in rules["destinations"].values():
        if "pagerduty" in spec:
            spec["pagerduty"]["max_per_minute"] = pagerduty_per_minute
        elif slack_per_second is not None:
            spec["slack"]["max_per_second"] = slack_per_second
    return str(yaml.safe_dump(rules, sort_keys=False))


class Router:
    """`python -m receiver serve` with its own rules, secrets and SQLite file."""

    def __init__(self, cpus: Cpus, workdir: Path, name: str, rules: str, sinks: Sinks) -> None:
        self.dir = workdir / name
        secrets_dir = self.dir / "secrets"
        secrets_dir.mkdir(parents=True)
        (secrets_dir / "webhook-token").write_text(TOKEN)
        (secrets_dir / "slack-webhook-url").write_text(sinks.info["slack_url"])
        (secrets_dir / "pagerduty-key").write_text(ROUTING_KEY)
        config = self.dir / "routes.yaml"
        config.write_text(rules, encoding="utf-8")
        self.db = self.dir / "state.db"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/alerts"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("ALERT_ROUTER_", "SLACK_", "PAGERDUTY_", "PROMETHEUS_"))
        }
        env.update(
            {
                "ALERT_ROUTER_CONFIG": str(config),
                "ALERT_ROUTER_STATE": str(self.db),
                "ALERT_ROUTER_SECRETS_DIR": str(secrets_dir),
                "ALERT_ROUTER_HOST": "127.0.0.1",
                "ALERT_ROUTER_PORT": str(self.port),
                "ALERT_ROUTER_LOG_FORMAT": "json",
                "PROMETHEUS_URL": sinks.info["prometheus_url"],
                "PAGERDUTY_EVENTS_URL": sinks.info["pagerduty_url"],
            }
        )
        self.log_path = self.dir / "router.log"
        self._log = self.log_path.open("w")
        self.proc = _spawn(
            cpus,
            [sys.executable, "-m", "receiver", "serve"],
            cpus.servers,
            env=env,
            stdout=self._log,
        )
        _wait_http(f"{self.base}/readyz", self.proc, f"alert-router ({name})")

    def counter(self, name: str, **labels: str) -> float:
        _, text = _get(f"{self.base}/metrics", timeout=10.0)
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        prefix = f"{name}{{{want}}} " if want else f"{name} "
        for line in text.decode().splitlines():
            if line.startswith(prefix):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def accepted(self) -> float:
        return self.counter(
            "alert_router_alerts_received_total", outcome="accepted", source="alertmanager"
        )

    def pipeline_counts(self) -> tuple[float, float]:
        """(dedup decisions made, notifications delivered) so far, over all destinations."""
        _, text = _get(f"{self.base}/metrics", timeout=10.0)
        routed = delivered = 0.0
        for line in text.decode().splitlines():
            if line.startswith("alert_router_dedup_decisions_total{"):
                routed += float(line.rsplit(" ", 1)[1])
            elif line.startswith("alert_router_notifications_total{") and (
                'outcome="delivered"' in line
            ):
                delivered += float(line.rsplit(" ", 1)[1])
        return routed, delivered

    def backlog(self) -> int:
        """Alerts waiting to be routed plus notifications waiting to be delivered."""
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM inbox) + (SELECT count(*) FROM outbox)"
            ).fetchone()
            return int(row[0])
        finally:
            conn.close()

    def drain(self, timeout: float = 120.0) -> float:
        """Wait until the queues are empty; returns the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.backlog() == 0:
                return time.monotonic() - started
            time.sleep(0.1)
        raise RuntimeError(f"router queues not drained within {timeout}s")

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
        return float("nan")

    def close(self) -> None:
        _stop(self.proc)
        self._log.close()


# -- load --------------------------------------------------------------------------------


def _wrk(
    cpus: Cpus,
    workdir: Path,
    url: str,
    *,
    profile: str,
    per: int,
    seconds: float,
    connections: int,
) -> dict[str, Any]:
    nonce = secrets.token_hex(3)
    script = workdir / f"wrk-{nonce}.lua"
    script.write_text(wrk_script(profile, nonce, per, TOKEN), encoding="utf-8")
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        url,
    ]
    proc = _spawn(cpus, cmd, cpus.load, stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=seconds + 60)
    for line in out.splitlines():
        if line.startswith("WRK_RESULT "):
            result: dict[str, Any] = json.loads(line.split(" ", 1)[1])
            seconds_run = result["duration_us"] / 1e6
            result["requests_per_s"] = round(result["requests"] / seconds_run, 1)
            result["alerts_per_s"] = round(result["requests"] * per / seconds_run, 1)
            result["nonce"] = nonce
            return result
    raise RuntimeError(f"wrk printed no result:\n{out}")


def _loadgen(cpus: Cpus, spec: dict[str, Any], timeout: float = 300.0) -> dict[str, Any]:
    proc = _spawn(
        cpus,
        [sys.executable, "-m", "bench.loadgen", json.dumps(spec)],
        cpus.load,
        stdout=subprocess.PIPE,
    )
    out, _ = proc.communicate(timeout=timeout)
    for line in out.splitlines():
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    raise RuntimeError(f"bench.loadgen printed no result:\n{out}")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _median(values: Sequence[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return round(statistics.median(clean), 3) if clean else float("nan")


# -- the run -----------------------------------------------------------------------------


class Bench:
    def __init__(self, workdir: Path, repeats: int, quick: bool) -> None:
        self.workdir = workdir
        self.repeats = repeats
        self.quick = quick
        self.cpus = Cpus()
        self.closing: list[Any] = []
        self.rss: dict[str, float] = {}

    def close(self) -> None:
        for item in reversed(self.closing):
            try:
                item.close()
            except Exception as exc:  # keep closing the others
                _log(f"closing {type(item).__name__}: {exc}")

    def _router(self, sinks: Sinks, name: str, rules: str) -> Router:
        router = Router(self.cpus, self.workdir, name, rules, sinks)
        self.closing.append(router)
        return router

    def _retire(self, router: Router) -> None:
        self.rss[router.dir.name] = router.peak_rss_mb()
        router.close()
        self.closing.remove(router)

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        result: dict[str, Any] = {
            "benchmark": "alert-router `make bench`",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": _machine(self.cpus),
        }
        _log("starting PagerDuty, Slack and Prometheus (bench.sinks)")
        sinks = Sinks(self.cpus, self.workdir)
        self.closing.append(sinks)
        result["machine"]["prometheus"] = sinks.info["prometheus"]
        bare = Bare(self.cpus, self.workdir)
        self.closing.append(bare)
        _log("starting alert-router (rate limits off)")
        router = self._router(sinks, "router-unlimited", _rules(0, 0))
        result["ingest_single_alert"] = self.single(bare, router)
        result["ack_latency_at_500_rps"] = self.latency(bare, router)
        result["end_to_end_pagerduty"] = self.end_to_end(router, sinks)
        self._retire(router)

        # A fresh router: 100-alert webhooks leave a backlog of several 10,000 alerts that
        # would take minutes to route and deliver; its queues are not drained but dropped.
        _log("starting alert-router (rate limits off) for 100-alert webhooks")
        router = self._router(sinks, "router-batches", _rules(0, 0))
        result["ingest_100_alerts"] = self.batch(bare, router)
        self._retire(router)
        bare.close()
        self.closing.remove(bare)

        _log("starting alert-router (shipped limits, PagerDuty unlimited) for the storm")
        router = self._router(sinks, "router-storm", _rules(0, None))
        result["storm"] = self.storm(router, sinks)
        self._retire(router)

        peak = max(self.rss.values())
        result["peak_rss"] = {
            "mb": peak,
            "per_router_mb": dict(self.rss),
            "target_mb": TARGET_RSS_MB,
            "ok": peak <= TARGET_RSS_MB,
            "how": "VmHWM of each router process from /proc/<pid>/status, at the end of its run",
        }
        result["targets"] = {
            "single_alert_ratio": result["ingest_single_alert"]["ok"],
            "alerts_per_s_100_alert_webhooks": result["ingest_100_alerts"]["ok"],
            "p99_ack_at_500_rps": result["ack_latency_at_500_rps"]["ok"],
            "storm_no_loss": result["storm"]["lost"] == 0,
            "storm_slack_within_limit": result["storm"]["slack"]["within_limit"],
            "storm_prometheus_bounded": result["storm"]["prometheus"]["ok"],
            "peak_rss": result["peak_rss"]["ok"],
        }
        result["bench_seconds"] = round(time.monotonic() - started, 1)
        return result

    def _wrk_cpu(
        self, pid: int, url: str, *, per: int, seconds: float, connections: int
    ) -> tuple[dict[str, Any], float]:
        """A wrk run, and the CPU seconds process `pid` used meanwhile."""
        before = _cpu_seconds(pid)
        out = _wrk(
            self.cpus,
            self.workdir,
            url,
            profile="slack",
            per=per,
            seconds=seconds,
            connections=connections,
        )
        return out, _cpu_seconds(pid) - before

    # 1 -----------------------------------------------------------------------------------

    def single(self, bare: Bare, router: Router) -> dict[str, Any]:
        seconds, connections = (3 if self.quick else 4), 32
        _log("single-alert webhooks: warm-up")
        for url in (bare.url, router.url):
            _wrk(self.cpus, self.workdir, url, profile="slack", per=1, seconds=1, connections=8)
        router.drain()
        runs = []
        for i in range(self.repeats):
            _log(f"single-alert webhooks: run {i + 1}/{self.repeats}")
            b, b_cpu = self._wrk_cpu(
                bare.proc.pid, bare.url, per=1, seconds=seconds, connections=connections
            )
            before = router.accepted()
            r, r_cpu = self._wrk_cpu(
                router.proc.pid, router.url, per=1, seconds=seconds, connections=connections
            )
            accepted = router.accepted() - before
            drain_cpu = _cpu_seconds(router.proc.pid)
            drain = router.drain()
            drain_cpu = _cpu_seconds(router.proc.pid) - drain_cpu
            runs.append(
                {
                    "bare_rps": b["requests_per_s"],
                    "router_rps": r["requests_per_s"],
                    "ratio": round(r["requests_per_s"] / b["requests_per_s"], 3),
                    "bare_cpu_us_per_request": round(b_cpu / b["requests"] * 1e6),
                    "router_cpu_us_per_request": round(r_cpu / r["requests"] * 1e6),
                    "router_cpu_us_per_alert_with_routing_and_delivery": round(
                        (r_cpu + drain_cpu) / max(accepted, 1) * 1e6
                    ),
                    "router_alerts_accepted": accepted,
                    "router_requests": r["requests"],
                    "router_errors": r["status_errors"] + r["timeouts"] + r["read_errors"],
                    "bare_errors": b["status_errors"] + b["timeouts"] + b["read_errors"],
                    "router_wrk_p99_ms": r["latency_p99_us"] / 1000,
                    "drain_after_s": round(drain, 2),
                }
            )
        ratio = _median([run["ratio"] for run in runs])
        bare_cpu = _median([run["bare_cpu_us_per_request"] for run in runs])
        router_cpu = _median([run["router_cpu_us_per_request"] for run in runs])
        return {
            "bare_rps": _median([run["bare_rps"] for run in runs]),
            "router_rps": _median([run["router_rps"] for run in runs]),
            "ratio": ratio,
            "target_ratio": TARGET_RATIO,
            "ok": ratio >= TARGET_RATIO,
            # CPU time per request is what sets the throughput of a process that has one
            # core, and other load on the machine disturbs it far less than requests/s.
            "bare_cpu_us_per_request": bare_cpu,
            "router_cpu_us_per_request": router_cpu,
            "cpu_ratio": round(bare_cpu / router_cpu, 3),
            "router_cpu_us_per_alert_with_routing_and_delivery": _median(
                [run["router_cpu_us_per_alert_with_routing_and_delivery"] for run in runs]
            ),
            "how": f"wrk -t1 -c{connections} -d{seconds}s, bare and router in turn, "
            "every alert unique; ratio is the median of the per-pair ratios; the router's "
            "queues are drained after each run (routing and delivery CPU counted apart)",
            "runs": runs,
        }

    # 2 -----------------------------------------------------------------------------------

    def batch(self, bare: Bare, router: Router) -> dict[str, Any]:
        seconds, connections = 3, 8
        runs = []
        _log("100-alert webhooks: bare endpoint")
        bare_out = _wrk(
            self.cpus,
            self.workdir,
            bare.url,
            profile="slack",
            per=100,
            seconds=seconds,
            connections=connections,
        )
        for i in range(self.repeats):
            _log(f"100-alert webhooks: run {i + 1}/{self.repeats}")
            before = router.accepted()
            r, r_cpu = self._wrk_cpu(
                router.proc.pid, router.url, per=100, seconds=seconds, connections=connections
            )
            accepted = router.accepted() - before
            runs.append(
                {
                    "router_alerts_per_s": r["alerts_per_s"],
                    "router_cpu_us_per_alert": round(r_cpu / max(accepted, 1) * 1e6, 1),
                    "router_requests": r["requests"],
                    "router_alerts_accepted": accepted,
                    "router_errors": r["status_errors"] + r["timeouts"] + r["read_errors"],
                    "router_wrk_p99_ms": r["latency_p99_us"] / 1000,
                    "backlog_after": router.backlog(),
                }
            )
        # What the pipeline gets through once the webhooks stop.
        window = 5.0
        routed, delivered = router.pipeline_counts()
        time.sleep(window)
        routed_after, delivered_after = router.pipeline_counts()
        value = _median([run["router_alerts_per_s"] for run in runs])
        return {
            "router_alerts_per_s": value,
            "bare_alerts_per_s": bare_out["alerts_per_s"],
            "target_alerts_per_s": TARGET_BATCH_ALERTS_PER_S,
            "ok": value >= TARGET_BATCH_ALERTS_PER_S,
            "router_cpu_us_per_alert": _median([run["router_cpu_us_per_alert"] for run in runs]),
            "pipeline_after_the_storm": {
                "routed_per_s": round((routed_after - routed) / window, 1),
                "delivered_per_s": round((delivered_after - delivered) / window, 1),
                "backlog": router.backlog(),
            },
            "how": f"wrk -t1 -c{connections} -d{seconds}s, 100 unique alerts per webhook, runs "
            "back to back on one router (its backlog grows); then routing and delivery "
            f"rates over {window:g}s once the webhooks stop",
            "runs": runs,
        }

    # 3 -----------------------------------------------------------------------------------

    def latency(self, bare: Bare, router: Router) -> dict[str, Any]:
        duration = 5 if self.quick else 8
        runs = []
        for i in range(self.repeats):
            _log(f"latency at 500 requests/s: run {i + 1}/{self.repeats}")
            spec = {
                "mode": "constant",
                "url": router.url,
                "token": TOKEN,
                "rate": 500,
                "duration": duration,
                "profile": "slack",
                "nonce": secrets.token_hex(3),
                "per": 1,
            }
            out = _loadgen(self.cpus, spec)
            drain = router.drain()
            out["drain_after_s"] = round(drain, 2)
            runs.append(out)
        _log("latency at 500 requests/s: bare endpoint, for reference")
        bare_out = _loadgen(
            self.cpus,
            {
                "mode": "constant",
                "url": bare.url,
                "token": TOKEN,
                "rate": 500,
                "duration": 4,
                "profile": "slack",
                "nonce": secrets.token_hex(3),
                "per": 1,
            },
        )
        p99 = _median([run["latency"]["p99_ms"] for run in runs])
        return {
            "p50_ms": _median([run["latency"]["p50_ms"] for run in runs]),
            "p99_ms": p99,
            "p999_ms": _median([run["latency"]["p999_ms"] for run in runs]),
            "target_p99_ms": TARGET_P99_MS,
            "ok": p99 <= TARGET_P99_MS,
            "bare_p50_ms": bare_out["latency"]["p50_ms"],
            "bare_p99_ms": bare_out["latency"]["p99_ms"],
            "load_generator_lag_p99_ms": _median([run["send_lag"]["p99_ms"] for run in runs]),
            "how": f"bench.loadgen: single-alert webhooks scheduled every 2 ms for {duration}s, "
            "latency from each request's scheduled time to the end of its answer (a late "
            "start of the generator counts against the router: see load_generator_lag)",
            "runs": [_drop(run, "acks") for run in runs],
        }

    # 4 -----------------------------------------------------------------------------------

    def end_to_end(self, router: Router, sinks: Sinks) -> dict[str, Any]:
        webhooks = 20
        bursts = []
        for i in range(self.repeats):
            _log(f"end to end, burst of {webhooks * 100} alerts to PagerDuty: {i + 1}")
            nonce = secrets.token_hex(3)
            spec = {
                "mode": "burst",
                "url": router.url,
                "token": TOKEN,
                "profile": "page",
                "nonce": nonce,
                "per": 100,
                "count": webhooks,
                "concurrency": 4,
                "record_acks": True,
            }
            sent = _loadgen(self.cpus, spec)
            expected = webhooks * 100
            ack_at = _ack_times(sent["acks"], 100, nonce, 0)
            events = _wait_pagerduty(sinks, nonce, expected, timeout=180)
            router.drain()
            bursts.append(_delivery_figures(ack_at, events, expected))
        _log("end to end, steady 100 alerts/s to PagerDuty")
        nonce = secrets.token_hex(3)
        duration = 5
        steady_sent = _loadgen(
            self.cpus,
            {
                "mode": "constant",
                "url": router.url,
                "token": TOKEN,
                "rate": 100,
                "duration": duration,
                "profile": "page",
                "nonce": nonce,
                "per": 1,
                "record_acks": True,
            },
        )
        ack_at = _ack_times(steady_sent["acks"], 1, nonce, 0)
        events = _wait_pagerduty(sinks, nonce, 100 * duration, timeout=120)
        router.drain()
        steady = _delivery_figures(ack_at, events, 100 * duration)
        return {
            "alerts_per_s": _median([b["alerts_per_s"] for b in bursts]),
            "ack_to_delivery_p50_ms": _median([b["delay"]["p50_ms"] for b in bursts]),
            "ack_to_delivery_p99_ms": _median([b["delay"]["p99_ms"] for b in bursts]),
            "steady_100_per_s_delay_p50_ms": steady["delay"]["p50_ms"],
            "steady_100_per_s_delay_p99_ms": steady["delay"]["p99_ms"],
            "how": f"bursts of {webhooks} webhooks x 100 BudgetThresholdExceeded (critical) "
            "alerts (routed to PagerDuty and Slack): rate = alerts / (last PagerDuty event - "
            "first ack); delay = PagerDuty receive time - the alert's ack time (queueing "
            "included). Steady: 100 single-alert webhooks/s for 5 s.",
            "bursts": bursts,
            "steady": steady,
        }

    # 5 -----------------------------------------------------------------------------------

    def storm(self, router: Router, sinks: Sinks) -> dict[str, Any]:
        webhooks, per = 100, 100
        total = webhooks * per
        nonce = secrets.token_hex(3)
        real_prometheus = sinks.info["prometheus"].startswith("debian")
        rules = yaml.safe_load((router.dir / "routes.yaml").read_text(encoding="utf-8"))
        context_values = len(rules.get("context") or {})
        cache_ttl = 30.0
        # Slack: "1 message per second per channel, with short bursts allowed".
        sinks.call("slack_limit", per_second=1.0, burst=2.0)
        queries_before = sinks.call("prometheus")["queries"]
        _log(f"storm: {total} alerts in {webhooks} webhooks (Slack at 1 message/s)")
        sent = _loadgen(
            self.cpus,
            {
                "mode": "burst",
                "url": router.url,
                "token": TOKEN,
                "profile": "storm",
                "nonce": nonce,
                "per": per,
                "count": webhooks,
                "concurrency": 4,
                "record_acks": True,
            },
        )
        started = sent["started_wall"]
        expected_pd: set[str] = set()
        expected_slack: set[str] = set()
        for i in range(total):
            kind = kind_of("storm", i)
            fp = fingerprint(nonce, i)
            # HighGPUCost reaches PagerDuty only through its cost condition (> $100/h),
            # which needs Prometheus' answer.
            if PAGERDUTY in kind.destinations and (kind.name != "HighGPUCost" or real_prometheus):
                expected_pd.add(fp)
            if SLACK in kind.destinations:
                expected_slack.add(fp)
        deadline = time.monotonic() + 240
        pd_seen: dict[str, float] = {}
        slack_messages: list[list[Any]] = []
        slack_seen: set[str] = set()
        events: list[list[Any]] = []
        while True:
            events = sinks.call("pagerduty", nonce=nonce)["events"]
            pd_seen = {}
            for wall, key, action, status in events:
                if status == 202 and action == "trigger":
                    pd_seen.setdefault(key.split("-", 1)[0], wall)
            slack_messages = sinks.call("slack", nonce=nonce)["messages"]
            slack_seen = {fp for _, status, fps in slack_messages if status == 200 for fp in fps}
            done = expected_pd <= set(pd_seen) and expected_slack <= slack_seen
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        sinks.call("pagerduty", nonce=nonce, reset=True)
        queries = sinks.call("prometheus")["queries"] - queries_before
        delivered_slack = [m for m in slack_messages if m[1] == 200]
        times = [m[0] for m in delivered_slack]
        last = max([*pd_seen.values(), *times], default=started)
        duration = last - started
        lost_pd = len(expected_pd - set(pd_seen))
        lost_slack = len(expected_slack - slack_seen)
        bound = context_values * (math.ceil(duration / cache_ttl) + 1)
        window_max = max_per_window(times, 1.0)
        gap = min_interval(times)
        return {
            "alerts": total,
            "acknowledged": sent["accepted"],
            "ack_seconds": sent["elapsed_s"],
            "ack_alerts_per_s": sent["alerts_per_s"],
            "seconds_until_all_delivered": round(duration, 2),
            "complete": done,
            "lost": lost_pd + lost_slack + (total - sent["accepted"]),
            "pagerduty": {
                "expected": len(expected_pd),
                "delivered": len(set(pd_seen) & expected_pd),
                "lost": lost_pd,
                "events_sent": len(events),
                "last_delivery_s": round(max(pd_seen.values(), default=started) - started, 2),
            },
            "slack": {
                "expected_alerts": len(expected_slack),
                "delivered_alerts": len(slack_seen & expected_slack),
                "lost": lost_slack,
                "messages": len(delivered_slack),
                "digests": sum(1 for m in delivered_slack if len(m[2]) > 1),
                "rate_limited_answers": sum(1 for m in slack_messages if m[1] == 429),
                "max_messages_in_any_1s": window_max,
                "min_gap_s": round(gap, 3) if math.isfinite(gap) else None,
                "within_limit": window_max <= 1,
            },
            "prometheus": {
                "queries": queries,
                "context_values": context_values,
                "cache_ttl_s": cache_ttl,
                "bound": bound,
                "ok": queries <= bound,
                "server": sinks.info["prometheus"],
            },
            "how": "100 webhooks x 100 alerts (BudgetThresholdExceeded critical, HighGPUCost "
            "on a $150+/h service, LowGPUUtilization, IdleGPU) posted on 4 connections to a "
            "router with the shipped rules, Slack at 1 message/s, PagerDuty unlimited; "
            "loss = alerts the routes send somewhere that the fake never received; Prometheus "
            "bound = context values x (cache periods the storm spans + 1)",
        }


def _drop(run: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k != key}


def _ack_times(acks: list[list[Any]], per: int, nonce: str, first: int) -> dict[str, float]:
    """Fingerprint -> wall time its webhook was acknowledged (200 only)."""
    out: dict[str, float] = {}
    for index, wall, status in acks:
        if status != 200:
            continue
        for k in range(per):
            out[fingerprint(nonce, first + index * per + k)] = wall
    return out


def _wait_pagerduty(sinks: Sinks, nonce: str, expected: int, timeout: float) -> list[list[Any]]:
    deadline = time.monotonic() + timeout
    while True:
        events = sinks.call("pagerduty", nonce=nonce)["events"]
        accepted = {e[1] for e in events if e[3] == 202 and e[2] == "trigger"}
        if len(accepted) >= expected or time.monotonic() > deadline:
            sinks.call("pagerduty", nonce=nonce, reset=True)
            return list(events)
        time.sleep(0.25)


def _delivery_figures(
    ack_at: dict[str, float], events: list[list[Any]], expected: int
) -> dict[str, Any]:
    first_seen: dict[str, float] = {}
    for wall, key, action, status in events:
        if status == 202 and action == "trigger":
            first_seen.setdefault(key.split("-", 1)[0], wall)
    delays = [first_seen[fp] - ack for fp, ack in ack_at.items() if fp in first_seen]
    first_ack = min(ack_at.values(), default=0.0)
    last = max(first_seen.values(), default=first_ack)
    span = max(last - first_ack, 1e-9)
    return {
        "alerts": expected,
        "delivered": len(first_seen),
        "missing": expected - len(set(first_seen) & set(ack_at)),
        "seconds": round(span, 3),
        "alerts_per_s": round(len(first_seen) / span, 1),
        "delay": summary_ms(delays),
    }


def _machine(cpus: Cpus) -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
        wrk_version = (wrk.stdout or wrk.stderr).splitlines()[0]
    except (OSError, IndexError):
        wrk_version = "not found"
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model or platform.processor(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": wrk_version,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "pinning": {"servers": cpus.servers, "load_and_sinks": cpus.load}
        if cpus.pinned
        else "none (one core)",
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--quick", action="store_true", help="shorter runs, for a smoke test")
    parser.add_argument("--output", type=Path, help="also write the JSON document here")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (make system-deps installs it)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="alert-router-bench-") as tmp:
        bench = Bench(Path(tmp), max(1, args.repeats), args.quick)
        try:
            result = bench.run()
        finally:
            bench.close()
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")
    return 0
