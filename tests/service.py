"""Running the real service (uvicorn) on a loopback port inside a test."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import uvicorn

from receiver.config.secrets import SecretStore
from receiver.config.settings import Settings
from receiver.models import Notification
from receiver.pipeline.tuning import Tuning
from receiver.runtime import build_service
from receiver.server import Service
from tests.support import free_port, wait_until

TOKEN = "test-token-0123456789"


@dataclass
class Sent:
    """What dry-run notifiers rendered, per destination."""

    items: list[tuple[str, Notification, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(
        self, destination: str, batch: Sequence[Notification], body: dict[str, Any]
    ) -> None:
        with self.lock:
            for notification in batch:
                self.items.append((destination, notification, body))

    def to(self, destination: str) -> list[Notification]:
        with self.lock:
            return [n for d, n, _ in self.items if d == destination]


class ServerThread:
    """uvicorn serving `service` in a thread with its own event loop."""

    def __init__(self, service: Service, port: int) -> None:
        self.service = service
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(
            uvicorn.Config(
                service.app(),
                host="127.0.0.1",
                port=port,
                log_config=None,
                access_log=False,
                lifespan="on",
            )
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.server.serve())
        self.loop.close()

    def start(self) -> ServerThread:
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), timeout=15)
        if not self.server.started:
            raise RuntimeError("the service did not start")
        return self

    def call(self, coro_factory: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run a coroutine on the server's loop (to read the store, say)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro_factory(), self.loop).result(timeout)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def make_settings(tmp_path: Path, config: Path, **overrides: Any) -> Settings:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir(exist_ok=True)
    (secrets_dir / "webhook-token").write_text(TOKEN)
    values: dict[str, Any] = {
        "config": config,
        "state": str(tmp_path / "state.db"),
        "secrets_dir": secrets_dir,
        "host": "127.0.0.1",
        "port": free_port(),
        "prometheus_url": "http://127.0.0.1:9",
    }
    values.update(overrides)
    return Settings().model_copy(update=values)


# Fast retries and polling, so delivery tests take seconds, not minutes.
FAST = Tuning(poll_interval=0.05, backoff_base=0.05, backoff_max=0.5, housekeeping_interval=0.5)


def start_service(
    settings: Settings,
    *,
    dry_run: bool = True,
    auth: bool = True,
    sent: Sent | None = None,
    tuning: Tuning | None = None,
) -> tuple[ServerThread, Sent]:
    sent = sent or Sent()
    service = build_service(
        settings,
        dry_run=dry_run,
        auth=auth,
        emit=sent,
        secrets=SecretStore(settings.secrets_dir, environ={}),
    )
    if tuning is not None:
        service.tuning = replace(tuning, dedup_window=settings.dedup_window, lease=settings.lease)
    return ServerThread(service, settings.port).start(), sent


class ServerProcess:
    """`python -m receiver serve` as a child process, its log lines kept for the test."""

    def __init__(self, settings: Settings, *args: str, env: dict[str, str] | None = None) -> None:
        import os
        import subprocess
        import sys

        self.settings = settings
        self.url = f"http://127.0.0.1:{settings.port}"
        self.lines: list[str] = []
        child_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("ALERT_ROUTER_", "SLACK_", "PAGERDUTY_", "PROMETHEUS_"))
        }
        child_env.update(
            {
                "ALERT_ROUTER_CONFIG": str(settings.config),
                "ALERT_ROUTER_STATE": settings.state,
                "ALERT_ROUTER_SECRETS_DIR": str(settings.secrets_dir),
                "ALERT_ROUTER_HOST": "127.0.0.1",
                "ALERT_ROUTER_PORT": str(settings.port),
                "ALERT_ROUTER_LOG_FORMAT": "json",
                "PROMETHEUS_URL": settings.prometheus_url or "http://127.0.0.1:9",
                "SLACK_API_URL": settings.slack_api_url,
                "PAGERDUTY_EVENTS_URL": settings.pagerduty_events_url,
                "ALERT_ROUTER_LEASE_SECONDS": str(settings.lease),
                "ALERT_ROUTER_DEDUP_WINDOW": str(settings.dedup_window),
            }
        )
        child_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "receiver", "serve", *args],
            env=child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_ready(self, timeout: float = 20.0) -> ServerProcess:
        import httpx

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError("server exited:\n" + "\n".join(self.lines[-30:]))
            try:
                return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=timeout)
        return self

    def logs(self) -> list[dict[str, Any]]:
        import json

        out = []
        for line in list(self.lines):
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def kill(self) -> None:
        import signal

        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._close()

    def _close(self) -> None:
        self._reader.join(timeout=5)
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.stdout.close()

    def stop(self) -> int:
        import signal
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()
        return self.proc.returncode
