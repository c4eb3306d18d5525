"""A local PagerDuty Events API v2 on a loopback port, and pytest fixtures that start it.

`POST /v2/enqueue` validates events as PagerDuty does and answers with PagerDuty's shapes:
202 `{"status": "success", "message": "Event processed", "dedup_key": ...}`, or 400
`{"status": "invalid event", "message": "Event object is invalid", "errors": [...]}`. The
error texts are the ones PagerDuty has been seen to send where known (routing key length and
characters, missing source/severity, summary too long). Accepted events update a model of
PagerDuty alerts per dedup_key (triggered, acknowledged, resolved) so tests can check that
triggers and resolves pair up.

Answers can be scripted (`script`, `fail`, `drop`) or made to fail at random with a seeded
`failure_rate`, and every request is recorded with its receive time and the TCP connection it
came on (numbered from 1 as connections are accepted), so tests can check keep-alive reuse.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

ENQUEUE_PATH = "/v2/enqueue"
# PagerDuty: "Events API payloads are limited to 512 KB" (read as 512000 bytes, as
# Alertmanager does; the stricter reading keeps the fake at least as strict as PagerDuty).
MAX_EVENT_BYTES = 512_000
MAX_SUMMARY_CHARS = 1024
MAX_DEDUP_KEY_CHARS = 255
SEVERITIES = ("critical", "error", "warning", "info")
ACTIONS = ("trigger", "acknowledge", "resolve")
# A valid-looking integration key: 32 alphanumeric characters.
ROUTING_KEY = "R0ut1ngKey0f32CharactersForTests"

_ALNUM = re.compile(r"[A-Za-z0-9]+")


@dataclass(frozen=True)
class Answer:
    """One scripted answer. `body` None means PagerDuty's usual body for `status`."""

    status: int = 500
    body: Mapping[str, Any] | str | bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # Close the connection after reading the request, without answering.
    drop: bool = False
    # Wait this long before answering (longer than the client's timeout: a timeout).
    delay: float = 0.0
    # Then handle the event normally (e.g. a slow but successful PagerDuty).
    process: bool = False


@dataclass
class Request:
    """A request as the fake received it."""

    received_at: float  # time.monotonic() when the request was read
    received_wall: float  # time.time() at the same moment
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    # The status answered, or None when the connection was dropped.
    status: int | None = None
    # Which TCP connection it came on: 1 for the first the fake accepted, and so on.
    connection: int = 0

    @property
    def routing_key(self) -> Any:
        return self.json.get("routing_key") if isinstance(self.json, dict) else None


@dataclass
class Incident:
    """A PagerDuty alert: opened by a trigger, closed by a resolve with the same routing key."""

    dedup_key: str
    routing_key: str
    status: str = "triggered"  # triggered | acknowledged | resolved
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def actions(self) -> list[str]:
        return [event["event_action"] for event in self.events]


class FakePagerDuty:
    """PagerDuty's Events API v2 on 127.0.0.1; use as a context manager or start/stop."""

    def __init__(self, *, failure_rate: float = 0.0, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._script: deque[Answer] = deque()
        self._random = random.Random(seed)
        self.failure_rate = failure_rate
        self.requests: list[Request] = []
        self.incidents: list[Incident] = []
        # Events accepted but not applied (resolve of an unknown or closed alert, or from a
        # different routing key), as PagerDuty drops them.
        self.dropped_events: list[dict[str, Any]] = []
        # TCP connections accepted and closed (by either side) so far.
        self.connections_opened = 0
        self.connections_closed = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> FakePagerDuty:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakePagerDuty:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "the fake is not started"
        port: int = self._server.server_address[1]
        return port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The enqueue URL, what PAGERDUTY_EVENTS_URL would be."""
        return self.base_url + ENQUEUE_PATH

    # -- scripting

    def script(self, *answers: Answer) -> None:
        """Queue answers; each request takes the next one before normal handling."""
        with self._lock:
            self._script.extend(answers)

    def fail(
        self,
        status: int,
        times: int = 1,
        *,
        body: Mapping[str, Any] | str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """The next `times` requests get `status` (with PagerDuty's body for it by default)."""
        self.script(*[Answer(status, body, dict(headers or {})) for _ in range(times)])

    def drop(self, times: int = 1) -> None:
        """The next `times` connections are closed without an answer."""
        self.script(*[Answer(drop=True) for _ in range(times)])

    def set_failure_rate(self, rate: float, seed: int = 0) -> None:
        """From now on each unscripted request fails with probability `rate` (429, 500, 502,
        503 or a dropped connection), chosen by a random generator seeded with `seed`."""
        with self._lock:
            self.failure_rate = rate
            self._random = random.Random(seed)

    # -- what happened

    def incident(self, dedup_key: str) -> Incident | None:
        """The latest PagerDuty alert with this dedup_key."""
        with self._lock:
            for incident in reversed(self.incidents):
                if incident.dedup_key == dedup_key:
                    return incident
        return None

    @property
    def events(self) -> list[dict[str, Any]]:
        """Accepted events (202) in the order they arrived."""
        with self._lock:
            return [
                r.json
                for r in self.requests
                if r.status == 202 and r.path == ENQUEUE_PATH and isinstance(r.json, dict)
            ]

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[Request]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.01)
        raise AssertionError(f"expected {count} requests, got {len(self.requests)}")

    def wait_for_closed_connections(self, count: int, timeout: float = 5.0) -> None:
        """Wait until `count` connections have closed (a client's close reaching the fake)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.connections_closed >= count:
                    return
            time.sleep(0.01)
        raise AssertionError(f"expected {count} closed connections, got {self.connections_closed}")

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.incidents.clear()
            self.dropped_events.clear()

    # -- connections (called from server threads)

    def _connected(self) -> int:
        with self._lock:
            self.connections_opened += 1
            return self.connections_opened

    def _disconnected(self) -> None:
        with self._lock:
            self.connections_closed += 1

    # -- the API (called from server threads)

    def _record(self, request: Request) -> Answer | None:
        with self._lock:
            self.requests.append(request)
            if self._script:
                return self._script.popleft()
            if self.failure_rate and self._random.random() < self.failure_rate:
                choice = self._random.choice((429, 500, 502, 503, 0))
                return Answer(drop=True) if choice == 0 else Answer(choice)
        return None

    def _handle(self, request: Request) -> tuple[int, dict[str, Any]]:
        if request.path != ENQUEUE_PATH:
            return 404, {"status": "not found", "message": "Not Found"}
        if request.method != "POST":
            return 405, {"status": "method not allowed", "message": "Method Not Allowed"}
        if len(request.body) > MAX_EVENT_BYTES:
            # PagerDuty enforces the 512 KB limit with a 400 (prometheus/alertmanager#2178).
            return _invalid([f"Event size exceeds the maximum of {MAX_EVENT_BYTES} bytes"])
        event = request.json
        if not isinstance(event, dict):
            return 400, {"status": "invalid event", "message": "Could not parse JSON body"}
        errors = _validate(event)
        if errors:
            return _invalid(errors)
        key = event.get("dedup_key") or uuid.uuid4().hex
        with self._lock:
            self._apply(event, key)
        return 202, {"status": "success", "message": "Event processed", "dedup_key": key}

    def _apply(self, event: dict[str, Any], key: str) -> None:
        action = event["event_action"]
        routing_key = event["routing_key"]
        current = next((i for i in reversed(self.incidents) if i.dedup_key == key), None)
        is_open = current is not None and current.status != "resolved"
        if action == "trigger":
            if current is None or not is_open:
                # A trigger after a resolve opens a new alert with the same dedup_key.
                current = Incident(key, routing_key)
                self.incidents.append(current)
            current.events.append(event)
            return
        # Acknowledge and resolve apply only to an open alert of the same routing key.
        if current is None or not is_open or current.routing_key != routing_key:
            self.dropped_events.append(event)
            return
        current.events.append(event)
        current.status = "acknowledged" if action == "acknowledge" else "resolved"


def _validate(event: Mapping[str, Any]) -> list[str]:
    """PagerDuty's checks of an event, each failure as PagerDuty words it (where known)."""
    errors: list[str] = []
    key = event.get("routing_key")
    if not isinstance(key, str) or not key:
        errors.append("'routing_key' is missing or blank")
    else:
        if len(key) != 32:
            errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
        if not _ALNUM.fullmatch(key):
            errors.append("'routing_key' cannot contain non-alphanumeric characters.")
    action = event.get("event_action")
    if not isinstance(action, str) or not action:
        errors.append("'event_action' is missing or blank")
    elif action not in ACTIONS:
        errors.append("'event_action' is invalid (must be one of trigger, acknowledge, resolve)")
    dedup = event.get("dedup_key")
    if dedup is not None and not isinstance(dedup, str):
        errors.append("'dedup_key' must be a string")
    elif isinstance(dedup, str) and len(dedup) > MAX_DEDUP_KEY_CHARS:
        errors.append(f"'dedup_key' is too long (maximum is {MAX_DEDUP_KEY_CHARS} characters)")
    elif action in ("acknowledge", "resolve") and not dedup:
        errors.append("'dedup_key' is missing or blank")
    if action == "trigger":
        errors += _validate_payload(event.get("payload"))
    for name, required in (("links", "href"), ("images", "src")):
        items = event.get(name)
        if items is None:
            continue
        if not isinstance(items, list) or not all(
            isinstance(item, dict) and isinstance(item.get(required), str) for item in items
        ):
            errors.append(f"'{name}' must be a list of objects with '{required}'")
    return errors


def _validate_payload(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing or blank"]
    errors: list[str] = []
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        errors.append("'payload.summary' is missing or blank")
    elif len(summary) > MAX_SUMMARY_CHARS:
        errors.append(f"'summary' is too long (maximum is {MAX_SUMMARY_CHARS} characters)")
    source = payload.get("source")
    if not isinstance(source, str) or not source.strip():
        errors.append("'payload.source' is missing or blank")
    severity = payload.get("severity")
    if not isinstance(severity, str) or not severity:
        errors.append("'payload.severity' is missing or blank")
    elif severity not in SEVERITIES:
        errors.append("'payload.severity' is invalid (must be critical, error, warning or info)")
    timestamp = payload.get("timestamp")
    if timestamp is not None and not _is_iso8601(timestamp):
        errors.append("'payload.timestamp' is not a valid ISO 8601 timestamp")
    for name in ("component", "group", "class"):
        if name in payload and not isinstance(payload[name], str):
            errors.append(f"'payload.{name}' must be a string")
    details = payload.get("custom_details")
    if details is not None and not isinstance(details, dict):
        errors.append("'payload.custom_details' must be an object")
    return errors


def _is_iso8601(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _invalid(errors: list[str]) -> tuple[int, dict[str, Any]]:
    return 400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors}


# What PagerDuty (or the load balancer in front of it) sends with these statuses.
_DEFAULT_BODIES: dict[int, Mapping[str, Any] | str] = {
    400: {"status": "invalid event", "message": "Event object is invalid", "errors": []},
    429: {
        "status": "throttle event",
        "message": "Requests for this service are arriving too quickly.  Please retry later.",
    },
    500: {"status": "error", "message": "Internal server error"},
    502: "<html><body><h1>502 Bad Gateway</h1></body></html>",
    503: "<html><body><h1>503 Service Unavailable</h1></body></html>",
    504: "<html><body><h1>504 Gateway Time-out</h1></body></html>",
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakePagerDuty

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away (timeout, dropped connection) is part of the tests.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body in one write, sent at once: no Nagle + delayed-ACK stalls (40 ms).
    wbufsize = -1
    disable_nagle_algorithm = True
    connection_number = 0

    def setup(self) -> None:
        super().setup()
        self.connection_number = self.server.fake._connected()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._disconnected()

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        now, wall = time.monotonic(), time.time()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        request = Request(
            received_at=now,
            received_wall=wall,
            method=self.command,
            path=self.path.split("?", 1)[0],
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            json=parsed,
            connection=self.connection_number,
        )
        fake = self.server.fake
        answer = fake._record(request)
        if answer is not None and answer.delay:
            time.sleep(answer.delay)
        if answer is not None and answer.drop:
            self._drop()
            return
        if answer is None or answer.process:
            status, payload = fake._handle(request)
            self._reply(request, status, payload, {})
            return
        default = _DEFAULT_BODIES.get(answer.status, {"status": "error", "message": "Error"})
        self._reply(
            request, answer.status, default if answer.body is None else answer.body, answer.headers
        )

    def _reply(
        self,
        request: Request,
        status: int,
        payload: Mapping[str, Any] | str | bytes,
        headers: Mapping[str, str],
    ) -> None:
        if isinstance(payload, bytes):
            data, kind = payload, "application/octet-stream"
        elif isinstance(payload, str):
            data, kind = payload.encode(), "text/html"
        else:
            data, kind = json.dumps(payload).encode(), "application/json"
        request.status = status
        try:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


# -- fixtures: register this module with `pytest_plugins`, or import the *_fixture functions
# (they are named so that importing them does not shadow the fixture argument)


@pytest.fixture(name="fake_pagerduty")
def fake_pagerduty_fixture() -> Iterator[FakePagerDuty]:
    """A started FakePagerDuty; its `url` is the enqueue URL to give the notifier."""
    with FakePagerDuty() as fake:
        yield fake


@pytest.fixture(name="flaky_pagerduty")
def flaky_pagerduty_fixture() -> Iterator[FakePagerDuty]:
    """A FakePagerDuty failing 30% of unscripted requests (seeded, so runs repeat)."""
    with FakePagerDuty(failure_rate=0.3, seed=1234) as fake:
        yield fake
