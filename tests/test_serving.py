"""The router's HTTP server (receiver/serving.py) over real sockets: requests that never
finish arriving are closed, connections beyond the limit are answered 503, and a
keep-alive client (as Alertmanager's) goes on sending over one connection."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from receiver.serving import server_config
from tests.support import wait_until

# Short, so the tests take seconds; the defaults are in receiver/serving.py.
REQUEST_TIMEOUT = 1.0


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the whole body, answers 200 with its length."""
    if scope["type"] == "lifespan":
        await receive()  # startup
        await send({"type": "lifespan.startup.complete"})
        await receive()  # shutdown
        await send({"type": "lifespan.shutdown.complete"})
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = str(size).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Running:
    """The router's uvicorn configuration serving `echo` in a thread."""

    def __init__(self, *, max_connections: int = 512, request_timeout: float = REQUEST_TIMEOUT):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        config = server_config(
            echo, loop="asyncio", max_connections=max_connections, request_timeout=request_timeout
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=10)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def serve() -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(**kwargs: float) -> Running:
        running = Running(**kwargs)  # type: ignore[arg-type]
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def request(path: str = "/alerts", body: bytes = b"{}") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response (status, headers, body) read off `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed in the middle of a body"
        rest += chunk
    return int(status_line.split()[1]), headers, rest[:length]


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server closes `sock` within `within` seconds."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_requests_that_never_finish_arriving_are_closed(serve: Callable[..., Running]) -> None:
    running = serve()
    # Slowloris: a header line now and then, never the blank line that ends the head.
    slow = [running.connect() for _ in range(50)]
    for sock in slow:
        sock.sendall(b"POST /alerts HTTP/1.1\r\nHost: router\r\n")
    # A body announced and never sent whole; a connection that never says anything.
    body = running.connect()
    body.sendall(request(body=b"x" * 100)[:-90])
    silent = running.connect()
    opened = time.monotonic()
    for _ in range(3):
        time.sleep(REQUEST_TIMEOUT / 4)
        for sock in slow:
            sock.sendall(b"X-Slow: 1\r\n")
    unfinished = [*slow, body, silent]
    closed = [closed_by_server(s, REQUEST_TIMEOUT + 2) for s in unfinished]
    took = time.monotonic() - opened
    for sock in unfinished:
        sock.close()
    assert all(closed), f"{closed.count(False)} of {len(closed)} still open"
    print(f"52 unfinished requests closed {took:.1f}s after they started")
    assert took >= REQUEST_TIMEOUT * 0.9, "closed before its time"
    # The server is fine for everyone else.
    with running.connect() as sock:
        sock.sendall(request())
        assert read_response(sock)[0] == 200


def test_keep_alive_clients_send_many_requests_over_one_connection(
    serve: Callable[..., Running],
) -> None:
    running = serve()
    with running.connect() as sock:
        for index in range(200):
            sock.sendall(request(body=b"a" * index))
            status, headers, answer = read_response(sock)
            assert (status, answer) == (200, str(index).encode())
            assert headers.get("connection") != "close"
        # Idle between requests for longer than a request may take to arrive: that is
        # keep-alive's time (5 s), not the request's.
        time.sleep(REQUEST_TIMEOUT * 2)
        sock.sendall(request())
        assert read_response(sock)[0] == 200


def test_connections_beyond_the_limit_are_answered_503(serve: Callable[..., Running]) -> None:
    running = serve(max_connections=3, request_timeout=30.0)
    held = [running.connect() for _ in range(3)]
    for sock in held:
        sock.sendall(request())
        assert read_response(sock)[0] == 200
    with running.connect() as extra:
        extra.sendall(request())
        status, headers, body = read_response(extra)
        # An answer Alertmanager retries, not a dropped connection.
        assert (status, body) == (503, b"Service Unavailable")
        assert headers["connection"] == "close"
    # The connections within the limit keep being served.
    for sock in held:
        sock.sendall(request())
        assert read_response(sock)[0] == 200
    held.pop().close()
    wait_until(lambda: len(running.server.server_state.connections) < 3)
    with running.connect() as sock:
        sock.sendall(request())
        assert read_response(sock)[0] == 200
    for sock in held:
        sock.close()
