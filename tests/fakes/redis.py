"""A real redis-server (Debian's package) for tests, on a free loopback port.

Fixtures:
- `redis_server`: a fresh server per test, no persistence (`--save ''`, AOF off).
- `redis_factory`: `start(appendonly=True, password=...)` -> a running RedisServer with its
  own data directory; AOF runs with `appendfsync always`, as the Redis store expects.
Both are stopped after the test. `.stop()` (SIGTERM, graceful), `.kill()` (SIGKILL, a
crash), `.pause()` / `.resume()` (SIGSTOP/SIGCONT: a hung Redis), `.start()` again on the
same port and data directory, `.command(...)` to set up and inspect.

Import the fixture functions into a test module to use them (pytest_plugins belongs in
the root conftest only); their names do not shadow the fixture arguments.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support import free_port, require_binary


class RedisServer:
    """redis-server as a subprocess on 127.0.0.1 with its own directory."""

    def __init__(
        self, binary: str, workdir: Path, *, appendonly: bool = False, password: str | None = None
    ) -> None:
        self.binary = binary
        self.workdir = workdir
        self.appendonly = appendonly
        self.password = password
        self.port = free_port()
        self.log_path = workdir / "redis.log"
        workdir.mkdir(parents=True, exist_ok=True)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _args(self) -> list[str]:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--logfile",
            str(self.log_path),
            "--save",
            "",
            "--daemonize",
            "no",
        ]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        return args

    def start(self) -> None:
        """Start and wait until it answers PING (after loading its AOF, if any)."""
        assert not self.running, "redis-server is already running"
        self._process = subprocess.Popen(
            self._args(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.command("PING") in (True, b"PONG", "PONG"):
                    return
            except redis.RedisError:
                pass
            if not self.running or time.monotonic() > deadline:
                self.kill()
                tail = self.log_path.read_text(errors="replace")[-2000:]
                pytest.fail(f"redis-server did not start on port {self.port}:\n{tail}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM: Redis finishes the AOF and exits, as on a graceful shutdown."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: a crash; only what was fsynced survives."""
        self._end(signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing answers (a hung Redis)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _end(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def command(self, *args: Any) -> Any:
        """Run one command on a short-lived connection (for setup and inspection)."""
        client = redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.password,
            socket_timeout=2,
            socket_connect_timeout=2,
            decode_responses=True,
        )
        try:
            # redis-py leaves execute_command unannotated; the reply is Any either way.
            return client.execute_command(*args)  # type: ignore[no-untyped-call]
        finally:
            client.close()


@pytest.fixture(name="redis_factory")
def redis_factory_fixture(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., RedisServer]]:
    """`start(appendonly=False, password=None)` -> a running RedisServer."""
    binary = require_binary("redis-server")
    servers: list[RedisServer] = []

    def start(*, appendonly: bool = False, password: str | None = None) -> RedisServer:
        server = RedisServer(
            binary, tmp_path_factory.mktemp("redis"), appendonly=appendonly, password=password
        )
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture(name="redis_server")
def redis_server_fixture(redis_factory: Callable[..., RedisServer]) -> RedisServer:
    """A fresh redis-server without persistence, stopped after the test."""
    return redis_factory()
