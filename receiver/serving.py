"""Running the HTTP service as a process: uvicorn's settings, a guard that closes
connections whose request never finishes arriving, and the process's signals and deadline.

Every way out of the process is bounded:
- the listening socket is bound before the application starts, so a port already taken
  ends the process at once, before a store or a pipeline exists (uvicorn's own bind error
  runs the application's shutdown, which could hang and leave the process deaf to SIGTERM);
- the first SIGTERM or SIGINT starts a graceful stop that has `SHUTDOWN_DEADLINE` seconds,
  whatever is stuck; a second one ends the process at once;
- the process ends with `os._exit`: tasks and threads still stuck (a send to a vendor that
  never answers) are abandoned, never awaited or joined.

Signals are taken by a thread of their own (`sigwait`), so they are seen even while the
event loop is stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Generator
from typing import NoReturn

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("alert_router.serving")

# Connections served at once. A request on a connection beyond them is answered 503 (with
# `connection: close`), which Alertmanager retries. Proposed: ALERT_ROUTER_MAX_CONNECTIONS.
MAX_CONNECTIONS = 512
# Seconds a request has to arrive whole, head and body, from its first byte (and a new
# connection to start one); a slower one is closed. uvicorn has no such timeout: its
# keep-alive timer runs only between requests. Proposed: ALERT_ROUTER_REQUEST_TIMEOUT.
REQUEST_TIMEOUT = 15.0
# Seconds an idle keep-alive connection stays open between requests (uvicorn's default).
KEEP_ALIVE = 5
# Seconds from the first SIGTERM or SIGINT to the end of the process, whatever is stuck.
# Below Kubernetes' default terminationGracePeriodSeconds (30), so SIGKILL never comes.
SHUTDOWN_DEADLINE = 9.0
# Of which, whole seconds for the answers in flight (uvicorn waits for their connections);
# then the lifespan's shutdown (`receiver.server`) gives the sends in flight theirs.
ANSWER_GRACE = 2

EXIT_OK = 0
# The graceful stop did not finish within SHUTDOWN_DEADLINE, or the application failed.
EXIT_FAILED = 1
EXIT_CANNOT_LISTEN = 2
_SIGNALS = {signal.SIGTERM, signal.SIGINT}


# -- connections -----------------------------------------------------------------------------


class RequestGuard(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request has not arrived
    whole `request_timeout` seconds after its first byte, or that sends nothing for as
    long after it opened (slowloris, or a client that connects and waits).

    A request only notes when it began: the connection's one timer, when it fires, closes
    a request that is late or sets itself for when the current one would be. A timer set
    and cancelled per request cost a keep-alive connection more than its parsing."""

    request_timeout: float = REQUEST_TIMEOUT
    _request_timer: asyncio.TimerHandle | None = None
    # Loop time the request being read began (or the connection opened); None while no
    # request is arriving.
    _waiting_since: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._begin()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # Each request of a keep-alive (or pipelined) connection has the whole timeout.
        self._begin()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # Arrived: from here the answer is the application's business, and the time
        # between requests uvicorn's keep-alive timeout.
        self._waiting_since = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._waiting_since = None
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None
        super().connection_lost(exc)

    def _begin(self) -> None:
        self._waiting_since = self.loop.time()
        if self._request_timer is None:
            self._request_timer = self.loop.call_later(self.request_timeout, self._check)

    def _check(self) -> None:
        self._request_timer = None
        since = self._waiting_since
        if since is None or self.transport.is_closing():
            return
        left = since + self.request_timeout - self.loop.time()
        if left > 0:
            self._request_timer = self.loop.call_later(left, self._check)
            return
        self._waiting_since = None
        # Info, not warning: under a slowloris attack this is one line per connection.
        log.info(
            "closing a connection whose request did not arrive in time",
            extra={
                "client": f"{self.client[0]}:{self.client[1]}" if self.client else None,
                "request_timeout_seconds": self.request_timeout,
            },
        )
        self.transport.close()


def request_guard(timeout: float) -> type[RequestGuard]:
    """The protocol class for uvicorn's `http=`, closing requests slower than `timeout`."""

    class Guard(RequestGuard):
        request_timeout = timeout

    return Guard


def server_config(
    app: ASGIApp,
    *,
    loop: str = "auto",
    max_connections: int = MAX_CONNECTIONS,
    request_timeout: float = REQUEST_TIMEOUT,
) -> uvicorn.Config:
    """uvicorn's settings for the router (the socket is passed to `serve` ready bound)."""
    return uvicorn.Config(
        app,
        loop=loop,
        http=request_guard(request_timeout),
        ws="none",
        lifespan="on",
        log_config=None,
        access_log=False,
        # uvicorn answers 503 once `connections >= limit_concurrency`, counting the
        # connection asking: + 1, so that `max_connections` connections are served.
        limit_concurrency=max_connections + 1,
        timeout_keep_alive=KEEP_ALIVE,
        timeout_graceful_shutdown=ANSWER_GRACE,
    )


def listen(host: str, port: int) -> socket.socket:
    """The listening socket on host:port (OSError when it cannot be had)."""
    if ":" in host:
        return socket.create_server(
            (host, port),
            family=socket.AF_INET6,
            backlog=2048,
            dualstack_ipv6=host == "::" and socket.has_dualstack_ipv6(),
        )
    return socket.create_server((host, port), family=socket.AF_INET, backlog=2048)


# -- the process -----------------------------------------------------------------------------


def exit_now(code: int) -> NoReturn:
    """End the process without waiting for anything still running (see the module doc)."""
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class _Server(uvicorn.Server):
    """uvicorn's server, whose signals are the `_Stopper`'s and whose every shutdown,
    however it starts, runs under the deadline."""

    def __init__(self, config: uvicorn.Config, on_stopping: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_stopping = on_stopping

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn's handlers only set a flag, which nothing reads while the application
        # starts or stops: the `_Stopper` thread takes the signals instead.
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        except SystemExit:
            # The application failed to start: what it started is abandoned in time.
            self._on_stopping()
            raise

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._on_stopping()
        await super().shutdown(sockets)


class _Stopper:
    """SIGTERM and SIGINT for the whole process: the first asks the server to stop and
    starts the deadline; the second ends the process at once, with 128 + its number as a
    shell reports a process that signal ended (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, server: _Server | None = None, deadline: float = SHUTDOWN_DEADLINE) -> None:
        self.server = server
        self._deadline = deadline
        self._lock = threading.Lock()
        self._first: int | None = None
        self._timer: threading.Timer | None = None

    def start(self) -> None:
        # Blocked in this thread (and so in every thread started from it) before the
        # application starts any: only `_wait` receives them.
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        threading.Thread(target=self._wait, name="signals", daemon=True).start()

    def _wait(self) -> None:
        while True:
            self.received(signal.sigwait(_SIGNALS))

    def received(self, signum: int) -> None:
        name = signal.Signals(signum).name
        with self._lock:
            first, self._first = self._first, self._first or signum
        if first is not None:
            log.warning("second signal: exiting now", extra={"signal": name})
            exit_now(128 + signum)
        log.info("stopping", extra={"signal": name, "deadline_seconds": self._deadline})
        if self.server is not None:
            self.server.should_exit = True
        self.stopping()

    def stopping(self) -> None:
        """Start the deadline (once; any later call keeps the first)."""
        with self._lock:
            if self._timer is not None:
                return
            self._timer = threading.Timer(self._deadline, self._expired)
            self._timer.daemon = True
            self._timer.start()

    def _expired(self) -> None:
        log.error(
            "shutdown deadline passed: abandoning what is still running",
            extra={"deadline_seconds": self._deadline},
        )
        exit_now(EXIT_FAILED)


def _tune_gc() -> None:
    """Fewer, shorter garbage collections while serving: what was made at startup (the
    app, the rules, the imported modules) is frozen out of every collection, and the
    young generation is collected every 20,000 allocations rather than 700. Each webhook,
    routing batch and history batch allocates many short-lived objects; with the default
    thresholds a collection ran every few of them and a full one stalled answers by tens
    of milliseconds (`make bench`: p99 at 500 req/s 33-39 ms before, 13-17 ms after, on
    the same build). Reference cycles are still collected, every few seconds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)


def serve(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    loop: str = "auto",
    max_connections: int = MAX_CONNECTIONS,
    request_timeout: float = REQUEST_TIMEOUT,
) -> NoReturn:
    """Serve `app` on host:port until SIGTERM or SIGINT, then end the process (see the
    module doc for every way it ends, and `EXIT_*` for its exit codes)."""
    try:
        sock = listen(host, port)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        log.error("cannot listen", extra={"listen": f"{host}:{port}", "error": reason})
        print(
            f"alert-router: refusing to start: cannot listen on {host}:{port}: {reason}",
            file=sys.stderr,
        )
        exit_now(EXIT_CANNOT_LISTEN)
    _tune_gc()
    stopper = _Stopper()
    stopper.start()
    config = server_config(
        app, loop=loop, max_connections=max_connections, request_timeout=request_timeout
    )
    server = stopper.server = _Server(config, stopper.stopping)
    code = EXIT_OK
    factory = config.get_loop_factory()
    event_loop = factory() if factory is not None else asyncio.new_event_loop()
    asyncio.set_event_loop(event_loop)
    log.info(
        "listening",
        extra={
            "listen": f"{host}:{port}",
            "max_connections": max_connections,
            "request_timeout_seconds": request_timeout,
        },
    )
    try:
        # Not asyncio.run: its teardown awaits every task left and joins the send
        # threads, which is what a stuck send must not hold up.
        event_loop.run_until_complete(server.serve(sockets=[sock]))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else EXIT_FAILED
    except BaseException:
        log.exception("the server failed")
        code = EXIT_FAILED
    if code == EXIT_OK and not server.started:
        code = EXIT_FAILED
    log.info("stopped", extra={"exit_code": code})
    exit_now(code)
