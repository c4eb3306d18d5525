"""Every way of stopping the router ends the process in time, in every state it can be in.

Real `python -m receiver serve` child processes on Debian's redis-server, stopped by
SIGTERM, SIGINT, two SIGTERMs, or unable to listen (the port is taken), while idle, with
Redis stopped, with vendors that never answer (sends in flight), and mid-storm (webhooks
pouring in, deliveries under way). Each must exit within `DEADLINE` seconds.

The bind failure is looped on both event loops: with the Redis store it used to hang for
ever in about 10 of 25 tries with uvloop and 19 of 20 with asyncio (uvicorn's bind error ran
the application's shutdown, which waited on a cancel redis-py had swallowed).
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from receiver.samples import webhook
from tests.fakes.pagerduty import ROUTING_KEY, FakePagerDuty
from tests.fakes.redis import RedisServer
from tests.fakes.slack import SlackWebhookServer
from tests.service import TOKEN, ServerProcess, make_settings
from tests.support import HangingServer, wait_until

AUTH = {"Authorization": f"Bearer {TOKEN}"}
# The bound: any stop, in any state, ends the process within this many seconds.
DEADLINE = 10.0
# After a second signal the process must be gone at once: this allows for a loaded machine.
AT_ONCE = 2.0
# Bind failures per event loop: enough to have caught the old race many times over.
BIND_TRIES = 20

RULES = """
destinations:
  hook: {slack: {webhook_url: {secret: slack-webhook-url}, max_per_second: 5}}
  pd: {pagerduty: {routing_key: {secret: pagerduty-key}, max_per_minute: 0}}
routes:
  - name: all
    to: [hook, pd]
"""


def alerts(tag: str, count: int) -> dict[str, object]:
    return webhook(
        [
            ({"alertname": f"{tag}{i:04d}", "severity": "critical"}, {"summary": "s"})
            for i in range(count)
        ]
    )


@dataclass
class Setup:
    """What a router of these tests runs against."""

    tmp_path: Path
    redis: RedisServer
    slack_url: str
    pagerduty_url: str

    def router(self, *args: str, home: str = "") -> ServerProcess:
        """A router started with `args`, its files under `home` (its own for each of
        routers started at once)."""
        directory = self.tmp_path / home
        directory.mkdir(exist_ok=True)
        config = directory / "routes.yaml"
        config.write_text(RULES)
        settings = make_settings(
            directory,
            config,
            state=self.redis.url,
            pagerduty_events_url=self.pagerduty_url,
        )
        (settings.secrets_dir / "slack-webhook-url").write_text(self.slack_url)
        (settings.secrets_dir / "pagerduty-key").write_text(ROUTING_KEY)
        return ServerProcess(settings, *args)


@pytest.fixture
def hanging() -> Iterator[HangingServer]:
    server = HangingServer()
    yield server
    server.close()


@pytest.fixture
def redis(redis_factory: Callable[..., RedisServer]) -> RedisServer:
    return redis_factory(appendonly=True)


def post(proc: ServerProcess, body: dict[str, object]) -> int:
    return httpx.post(f"{proc.url}/alerts", json=body, headers=AUTH, timeout=10).status_code


# -- the states -------------------------------------------------------------------------------


class Storm:
    """Webhooks posted without pause from several threads until stopped."""

    def __init__(self, proc: ServerProcess) -> None:
        self.proc = proc
        self.answers: list[int] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._post, args=(n,)) for n in range(4)]
        for thread in self._threads:
            thread.start()

    def _post(self, n: int) -> None:
        with httpx.Client(headers=AUTH, timeout=5) as client:
            batch = 0
            while not self._stop.is_set():
                batch += 1
                try:
                    response = client.post(
                        f"{self.proc.url}/alerts", json=alerts(f"S{n}b{batch}x", 50)
                    )
                except httpx.TransportError:
                    time.sleep(0.05)
                    continue
                self.answers.append(response.status_code)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)


def enter_state(
    state: str, setup: Setup, hanging: HangingServer
) -> tuple[ServerProcess, Storm | None]:
    """A ready router in `state`."""
    proc = setup.router().wait_ready()
    storm = None
    if state == "store down":
        assert post(proc, alerts("Down", 20)) == 200
        setup.redis.stop()
        wait_until(lambda: httpx.get(f"{proc.url}/readyz", timeout=10).status_code == 503)
    elif state == "vendor down":
        assert post(proc, alerts("Hang", 40)) == 200
        # Both vendors hold the router's sends: connections open, no answer.
        wait_until(lambda: len(hanging._held) >= 2, timeout=15)
    elif state == "mid-storm":
        storm = Storm(proc)
        wait_until(lambda: len(storm.answers) >= 20, timeout=15)
    return proc, storm


@pytest.fixture(params=["idle", "store down", "vendor down", "mid-storm"])
def state(request: pytest.FixtureRequest) -> str:
    param: str = request.param
    return param


@pytest.fixture
def setup(
    state: str,
    tmp_path: Path,
    redis: RedisServer,
    hanging: HangingServer,
    slack_webhook: SlackWebhookServer,
    fake_pagerduty: FakePagerDuty,
) -> Setup:
    if state == "vendor down":
        # Vendors that take the connection and never answer.
        return Setup(tmp_path, redis, f"{hanging.url}/services/x", f"{hanging.url}/v2/enqueue")
    return Setup(tmp_path, redis, slack_webhook.url, fake_pagerduty.url)


def wait_exit(proc: ServerProcess, timeout: float) -> int | None:
    try:
        return proc.proc.wait(timeout=timeout)
    except Exception:
        return None


# -- stopping ----------------------------------------------------------------------------------


def half_sent_webhook(proc: ServerProcess) -> socket.socket:
    """A webhook whose body is still arriving: the graceful stop waits for its answer
    (up to its grace), so a second signal comes while the first stop is under way."""
    sock = socket.create_connection(("127.0.0.1", proc.settings.port), timeout=5)
    sock.sendall(
        b"POST /alerts HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 1000\r\n\r\n{"
    )
    return sock


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_router_in_time(
    state: str, setup: Setup, hanging: HangingServer, signum: signal.Signals
) -> None:
    proc, storm = enter_state(state, setup, hanging)
    # An answer in flight too: the stop waits for it within its grace, then goes on.
    held = half_sent_webhook(proc)
    try:
        sent = time.monotonic()
        proc.proc.send_signal(signum)
        code = wait_exit(proc, DEADLINE)
        took = time.monotonic() - sent
        print(f"{signum.name} while {state}: exit {code} after {took:.1f}s")
        assert code is not None, f"still running {DEADLINE}s after {signum.name}:\n" + "\n".join(
            proc.lines[-20:]
        )
        # A graceful stop: sends stuck past their grace are abandoned, not waited for.
        assert code == 0, "\n".join(proc.lines[-20:])
        assert any(e.get("message") == "stopping" for e in proc.logs())
    finally:
        held.close()
        if storm is not None:
            storm.stop()
        proc.stop()


def test_a_second_sigterm_exits_at_once(state: str, setup: Setup, hanging: HangingServer) -> None:
    proc, storm = enter_state(state, setup, hanging)
    held = half_sent_webhook(proc)
    try:
        time.sleep(0.2)
        proc.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert proc.proc.poll() is None, "the first SIGTERM did not wait for the answer"
        again = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        code = wait_exit(proc, DEADLINE)
        after = time.monotonic() - again
        print(f"two SIGTERMs while {state}: exit {code} {after:.1f}s after the second")
        assert code is not None, "the second SIGTERM was ignored"
        # Ended by the second signal, as a shell reports it: 128 + 15.
        assert code == 128 + signal.SIGTERM, "\n".join(proc.lines[-20:])
        assert after < AT_ONCE
    finally:
        held.close()
        if storm is not None:
            storm.stop()
        proc.stop()


# -- unable to listen ------------------------------------------------------------------------


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_taken_port_ends_the_router_at_once(
    loop: str,
    tmp_path: Path,
    redis: RedisServer,
    slack_webhook: SlackWebhookServer,
    fake_pagerduty: FakePagerDuty,
) -> None:
    setup = Setup(tmp_path, redis, slack_webhook.url, fake_pagerduty.url)

    def one(attempt: int) -> tuple[int | None, float, list[str]]:
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            proc = setup.router("--loop", loop, "--port", str(port), home=f"try{attempt}")
            started = time.monotonic()
            code = wait_exit(proc, DEADLINE)
            took = time.monotonic() - started
            if code is None:
                proc.kill()
            else:
                proc.stop()
            return code, took, proc.lines
        finally:
            taken.close()

    # Two at once: each try takes a second or two (a Python process starting).
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, range(BIND_TRIES)))
    hung = [i for i, (code, _, _) in enumerate(results) if code is None]
    slowest = max(took for _, took, _ in results)
    print(f"{loop}: {BIND_TRIES} bind failures, {len(hung)} hung, slowest exit {slowest:.1f}s")
    assert hung == [], f"hung in {len(hung)} of {BIND_TRIES} tries"
    for code, _, lines in results:
        assert code == 2, "\n".join(lines[-20:])
        assert any("refusing to start: cannot listen on 127.0.0.1:" in line for line in lines)
        assert any("Address already in use" in line for line in lines)
