"""Local servers that speak Slack's incoming-webhook and Web API protocols.

Each runs on a free loopback port in a background thread, records every request,
validates messages against Block Kit's limits as Slack does, and can be scripted
to answer with Slack's errors, rate limits, 5xx or a dropped connection.

    def test_x(slack_webhook: SlackWebhookServer) -> None:
        slack_webhook.script(Answer(429, "rate_limited", {"Retry-After": "1"}))
        ...

Fixtures: `slack_webhook`, `slack_api`. Register with `pytest_plugins = ["tests.fakes.slack"]`.
"""

from __future__ import annotations

import json
import math
import random
import sys
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from types import TracebackType
from typing import Any, Self

import pytest

BOT_TOKEN = "xoxb-0000000000-test-token"
WORKSPACE_URL = "https://fake-workspace.slack.com/"
WEBHOOK_PATH = "/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"
DEFAULT_CHANNEL = "#gpu-costs"
DEFAULT_CHANNEL_ID = "C0GPUCOSTS1"

# Block Kit limits as Slack enforces them (docs.slack.dev/reference/block-kit/blocks).
MAX_BLOCKS = 50  # Slack: 50 blocks per message (counted with the attachments' blocks here)
MAX_SECTION_TEXT = 3000  # Slack: section text 3000 characters
MAX_FIELDS = 10  # Slack: 10 fields per section
MAX_FIELD_TEXT = 2000  # Slack: 2000 characters per field
MAX_HEADER_TEXT = 150  # Slack: header text 150 characters
MAX_CONTEXT_ELEMENTS = 10  # Slack: 10 elements per context block
MAX_ACTIONS_ELEMENTS = 25  # Slack: 25 elements per actions block
MAX_BUTTON_TEXT = 75  # Slack: button text 75 characters
MAX_BUTTON_VALUE = 2000  # Slack: button value 2000 characters
MAX_ACTION_ID = 255  # Slack: action_id 255 characters
MAX_URL = 3000  # Slack: button url 3000 characters
MAX_IMAGE_URL = 3000  # Slack: image block image_url 3000 characters
MAX_ALT_TEXT = 2000  # Slack: image block alt_text 2000 characters
MAX_BLOCK_ID = 255  # Slack: block_id 255 characters
MAX_ATTACHMENTS = 100  # Slack: 100 attachments per message
MAX_MESSAGE_TEXT = 40_000  # Slack: chat.postMessage msg_too_long past 40,000 characters


@dataclass(frozen=True, slots=True)
class Answer:
    """A scripted answer. `drop` closes the connection without any response.

    With `after_delivery`, the request is processed (stored) first and then answered
    this way: Slack got the message but the sender never learned it.
    """

    status: int = 200
    body: str | Mapping[str, Any] = "ok"
    headers: Mapping[str, str] = field(default_factory=dict)
    drop: bool = False
    delay: float = 0.0
    after_delivery: bool = False


DROP = Answer(status=0, body="", drop=True)


def api_error(code: str, *, status: int = 200, retry_after: float | None = None) -> Answer:
    """A Web API failure: `{"ok": false, "error": code}`."""
    headers = {"Retry-After": _seconds(retry_after)} if retry_after is not None else {}
    return Answer(status, {"ok": False, "error": code}, headers)


def ratelimited(retry_after: float = 1) -> Answer:
    """Web API rate limit: HTTP 429, `ratelimited`, Retry-After in seconds."""
    return api_error("ratelimited", status=429, retry_after=retry_after)


def webhook_error(status: int, code: str, *, retry_after: float | None = None) -> Answer:
    """An incoming-webhook failure: HTTP status with the error code as plain text."""
    headers = {"Retry-After": _seconds(retry_after)} if retry_after is not None else {}
    return Answer(status, code, headers)


def _seconds(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the server received it, and what it answered (0: dropped)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any
    raw: bytes
    at: float
    wall: float
    status: int
    answer: str | Mapping[str, Any]

    def header(self, name: str) -> str | None:
        """A request header, looked up without regard to case."""
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


@dataclass(slots=True)
class _Bucket:
    """A token bucket: `burst` messages at once, refilled at `rate` per second."""

    rate: float
    burst: float
    tokens: float
    last: float

    def take(self, now: float) -> float | None:
        """None when a message may pass now, else the seconds until one may."""
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        return (1 - self.tokens) / self.rate


@dataclass(slots=True)
class Message:
    """A message as a Slack channel holds it, after every chat.update."""

    channel: str
    ts: str
    text: str
    blocks: list[Any]
    attachments: list[Any]
    thread_ts: str | None = None
    broadcast: bool = False
    edits: int = 0
    replies: list[Message] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # ids of the files it shares

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": "message",
            "subtype": "bot_message",
            "bot_id": "B0FAKEBOT",
            "text": self.text,
            "ts": self.ts,
        }
        if self.blocks:
            data["blocks"] = self.blocks
        if self.attachments:
            data["attachments"] = self.attachments
        if self.thread_ts:
            data["thread_ts"] = self.thread_ts
        if self.edits:
            data["edited"] = {"user": "U0FAKEBOT", "ts": self.ts}
        return data

    def all_text(self) -> str:
        """Every string in the message (text, blocks, attachments), joined by newlines."""
        return "\n".join(strings({"t": self.text, "b": self.blocks, "a": self.attachments}))


@dataclass(slots=True)
class Upload:
    """A file reserved with files.getUploadURLExternal, its bytes once uploaded, and where
    files.completeUploadExternal shared it."""

    file_id: str
    filename: str
    length: int
    data: bytes | None = None
    title: str | None = None
    channel: str | None = None
    thread_ts: str | None = None
    completed: bool = False


@dataclass(slots=True)
class Channel:
    id: str
    name: str
    member: bool = True
    archived: bool = False
    messages: list[Message] = field(default_factory=list)


# -- validation --------------------------------------------------------------------------


def validate_message(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """Slack's error code and a detail for a message that breaks its limits, or None."""
    text = body.get("text")
    blocks = body.get("blocks")
    attachments = body.get("attachments")
    if not text and not blocks and not attachments:
        return "no_text", "text, blocks or attachments required"
    if text is not None and not isinstance(text, str):
        return "invalid_arguments", "text must be a string"
    if isinstance(text, str) and len(text) > MAX_MESSAGE_TEXT:
        return "msg_too_long", f"text has {len(text)} characters"
    if blocks is not None and not isinstance(blocks, list):
        return "invalid_blocks_format", "blocks must be an array"
    if attachments is not None and not isinstance(attachments, list):
        return "invalid_attachments", "attachments must be an array"
    attachments = attachments or []
    if len(attachments) > MAX_ATTACHMENTS:
        return "too_many_attachments", f"{len(attachments)} attachments"
    all_blocks = list(blocks or [])
    for index, attachment in enumerate(attachments):
        if not isinstance(attachment, dict):
            return "invalid_attachments", f"attachment {index} is not an object"
        inner = attachment.get("blocks", [])
        if not isinstance(inner, list):
            return "invalid_blocks_format", f"attachment {index} blocks must be an array"
        all_blocks.extend(inner)
    if len(all_blocks) > MAX_BLOCKS:
        return "invalid_blocks", f"{len(all_blocks)} blocks, more than {MAX_BLOCKS}"
    for index, block in enumerate(all_blocks):
        problem = _block_problem(block)
        if problem:
            return "invalid_blocks", f"block {index}: {problem}"
    return None


def _block_problem(block: Any) -> str | None:
    if not isinstance(block, dict):
        return "not an object"
    block_id = block.get("block_id")
    if block_id is not None and (not isinstance(block_id, str) or len(block_id) > MAX_BLOCK_ID):
        return "block_id must be a string of at most 255 characters"
    kind = block.get("type")
    if kind == "section":
        text, fields = block.get("text"), block.get("fields")
        if text is None and not fields:
            return "section needs text or fields"
        if text is not None:
            problem = _text_problem(text, MAX_SECTION_TEXT)
            if problem:
                return f"section text: {problem}"
        if fields is not None:
            if not isinstance(fields, list) or len(fields) > MAX_FIELDS:
                return f"section fields: at most {MAX_FIELDS}"
            for item in fields:
                problem = _text_problem(item, MAX_FIELD_TEXT)
                if problem:
                    return f"section field: {problem}"
        return None
    if kind == "header":
        return _text_problem(block.get("text"), MAX_HEADER_TEXT, plain_only=True)
    if kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= MAX_CONTEXT_ELEMENTS:
            return f"context needs 1 to {MAX_CONTEXT_ELEMENTS} elements"
        for item in elements:
            if isinstance(item, dict) and item.get("type") == "image":
                continue
            problem = _text_problem(item, MAX_SECTION_TEXT)
            if problem:
                return f"context element: {problem}"
        return None
    if kind == "actions":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= MAX_ACTIONS_ELEMENTS:
            return f"actions needs 1 to {MAX_ACTIONS_ELEMENTS} elements"
        for item in elements:
            if not isinstance(item, dict):
                return "action element is not an object"
            if item.get("type") == "button":
                problem = _text_problem(item.get("text"), MAX_BUTTON_TEXT, plain_only=True)
                if problem:
                    return f"button text: {problem}"
                url = item.get("url")
                if url is not None and (not isinstance(url, str) or len(url) > MAX_URL):
                    return f"button url over {MAX_URL} characters"
                value = item.get("value")
                if value is not None and (
                    not isinstance(value, str) or len(value) > MAX_BUTTON_VALUE
                ):
                    return f"button value over {MAX_BUTTON_VALUE} characters"
                action_id = item.get("action_id")
                if action_id is not None and (
                    not isinstance(action_id, str) or len(action_id) > MAX_ACTION_ID
                ):
                    return f"action_id over {MAX_ACTION_ID} characters"
        return None
    if kind == "image":
        url, alt = block.get("image_url"), block.get("alt_text")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            return "image_url must be an http(s) URL"
        if len(url) > MAX_IMAGE_URL:
            return f"image_url over {MAX_IMAGE_URL} characters"
        if not isinstance(alt, str) or not alt or len(alt) > MAX_ALT_TEXT:
            return f"alt_text must be 1 to {MAX_ALT_TEXT} characters"
        return None
    if kind in ("divider", "rich_text", "markdown", "input", "file", "video"):
        return None
    return f"unknown block type {kind!r}"


def _text_problem(obj: Any, limit: int, *, plain_only: bool = False) -> str | None:
    if not isinstance(obj, dict):
        return "a text object is required"
    kind = obj.get("type")
    allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    if kind not in allowed:
        return f"text type must be one of {allowed}"
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return "text must be a non-empty string"
    if len(text) > limit:
        return f"text has {len(text)} characters, more than {limit}"
    return None


def strings(value: Any) -> Iterator[str]:
    """Every string inside a JSON value (dict values and keys excluded: values only)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


# -- rate checks -------------------------------------------------------------------------


def max_per_window(times: Sequence[float], window: float = 1.0) -> int:
    """The most timestamps that fall within any `window` seconds (half-open)."""
    ordered = sorted(times)
    best = 0
    start = 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def min_interval(times: Sequence[float]) -> float:
    """The shortest gap between consecutive timestamps (inf for fewer than two)."""
    ordered = sorted(times)
    gaps = [b - a for a, b in pairwise(ordered)]
    return min(gaps, default=float("inf"))


# -- server plumbing ---------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: _FakeServer) -> None:
        super().__init__(address, _Handler)
        self.fake = fake

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a timeout test) before the answer was written: expected.
        if isinstance(sys.exc_info()[1], BrokenPipeError | ConnectionResetError):
            return
        super().handle_error(request, client_address)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self.fake._lock:
            self.fake.connections += 1
        return True


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    # Slack keeps connections alive between requests; clients are expected to reuse them.
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        transit = self.server.fake._next_transit()
        if transit:
            time.sleep(transit)  # the request takes this long to arrive
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        headers = {key: value for key, value in self.headers.items()}
        answer = self.server.fake._receive(self.path, headers, raw)
        if answer.delay:
            time.sleep(answer.delay)
        if answer.drop:
            self.close_connection = True
            return
        if isinstance(answer.body, str):
            payload = answer.body.encode()
            content_type = "text/plain; charset=utf-8"
        else:
            payload = json.dumps(answer.body).encode()
            content_type = "application/json; charset=utf-8"
        self.send_response(answer.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in answer.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self.send_response(405)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `requests` instead."""


class _FakeServer:
    """Shared plumbing: the HTTP server thread, the request log, scripts, random failures."""

    def __init__(self, *, port: int = 0) -> None:
        self._port = port
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._scripts: dict[str | None, deque[Answer]] = {}
        self._chaos: tuple[random.Random, float, tuple[Answer, ...]] | None = None
        self._limit: tuple[float, float] | None = None
        self._buckets: dict[str, _Bucket] = {}
        self._transits: deque[float] = deque()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        # TCP connections accepted so far (a pooled client opens one for many requests).
        self.connections = 0
        # Image URLs (prefixes) Slack cannot download: a message showing one is refused
        # with invalid_blocks, "downloading image failed", as Slack does.
        self.unreachable_images: set[str] = set()

    # lifecycle

    def start(self) -> Self:
        self._httpd = _HTTPServer(("127.0.0.1", self._port), self)
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    # scripting

    def script(self, *answers: Answer, method: str | None = None) -> None:
        """Answer the next requests (of `method`, or any) with `answers`, in order."""
        with self._lock:
            self._scripts.setdefault(method, deque()).extend(answers)

    def fail_randomly(
        self, rate: float, *, seed: int = 0, answers: Sequence[Answer] | None = None
    ) -> None:
        """Fail a `rate` share of requests (seeded) with 500, 429 or a dropped connection."""
        with self._lock:
            chosen = tuple(answers) if answers else self._failures()
            self._chaos = (random.Random(seed), rate, chosen)

    def stop_failing(self) -> None:
        with self._lock:
            self._chaos = None
            self._scripts.clear()

    def slow_network(self, *transits: float) -> None:
        """The next requests take these many seconds, in order, to arrive (a slow path
        through the network): they are read and timed that much later than they left."""
        with self._lock:
            self._transits.extend(transits)

    def _next_transit(self) -> float:
        with self._lock:
            return self._transits.popleft() if self._transits else 0.0

    def limit_rate(self, per_second: float = 1.0, *, burst: float = 1.0) -> None:
        """Answer 429 with Retry-After past `per_second` messages per hook or channel.

        Slack: "1 message per second per channel, with short bursts allowed".
        """
        with self._lock:
            self._limit = (per_second, burst)
            self._buckets.clear()

    def _over_limit(self, key: str) -> float | None:
        """Seconds to wait if a message to `key` breaks the rate limit; lock held."""
        if self._limit is None:
            return None
        now = time.monotonic()
        rate, burst = self._limit
        bucket = self._buckets.setdefault(key, _Bucket(rate, burst, burst, now))
        return bucket.take(now)

    def _failures(self) -> tuple[Answer, ...]:
        raise NotImplementedError

    def _scripted(self, method: str) -> Answer | None:
        """The next scripted or random failure for `method`; call with the lock held."""
        for key in (method, None):
            queue = self._scripts.get(key)
            if queue:
                return queue.popleft()
        if self._chaos is not None:
            rng, rate, answers = self._chaos
            if rng.random() < rate:
                return rng.choice(answers)
        return None

    # recording

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def _record(
        self, method: str, path: str, headers: Mapping[str, str], body: Any, raw: bytes, a: Answer
    ) -> Request:
        request = Request(
            method=method,
            path=path,
            headers=dict(headers),
            body=body,
            raw=raw,
            at=time.monotonic(),
            wall=time.time(),
            status=0 if a.drop else a.status,
            answer=a.body,
        )
        self._requests.append(request)
        return request

    def _receive(self, path: str, headers: Mapping[str, str], raw: bytes) -> Answer:
        raise NotImplementedError

    def _image_problem(self, body: Mapping[str, Any]) -> str | None:
        blocks = list(body.get("blocks") or [])
        for attachment in body.get("attachments") or []:
            if isinstance(attachment, dict):
                blocks.extend(attachment.get("blocks") or [])
        for block in blocks:
            url = block.get("image_url") if isinstance(block, dict) else None
            if isinstance(url, str) and any(url.startswith(p) for p in self.unreachable_images):
                return "downloading image failed"
        return None


def _json_or_form(headers: Mapping[str, str], raw: bytes, json_fields: Sequence[str]) -> Any:
    """A request body as Slack reads it: JSON, or a form whose `json_fields` hold JSON."""
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    text = raw.decode("utf-8", errors="replace")
    if "application/x-www-form-urlencoded" in content_type:
        form: dict[str, Any] = dict(urllib.parse.parse_qsl(text, keep_blank_values=True))
        if "payload" in form and len(form) == 1:  # incoming webhooks accept payload=<json>
            return json.loads(form["payload"])
        for name in json_fields:
            if isinstance(form.get(name), str):
                form[name] = json.loads(form[name])
        return form
    return json.loads(text)


# -- incoming webhook --------------------------------------------------------------------


class SlackWebhookServer(_FakeServer):
    """Slack incoming webhooks: POST a message to a hook path, `ok` or an error code."""

    def __init__(self, *, port: int = 0, path: str = WEBHOOK_PATH) -> None:
        super().__init__(port=port)
        self.path = path
        self._paths = {path}
        self._delivered: list[Request] = []

    @property
    def url(self) -> str:
        """The webhook URL (the secret a notifier uses)."""
        return self.url_for(self.path)

    def url_for(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def add_hook(self, path: str) -> str:
        with self._lock:
            self._paths.add(path)
        return self.url_for(path)

    def remove_hook(self, path: str) -> None:
        """The hook is gone: Slack answers 404 no_service from now on."""
        with self._lock:
            self._paths.discard(path)

    @property
    def delivered(self) -> list[Request]:
        """Requests Slack accepted (200 `ok`), in order."""
        with self._lock:
            return list(self._delivered)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Bodies of the accepted messages, in order."""
        return [r.body for r in self.delivered]

    def delivery_times(self) -> list[float]:
        return [r.at for r in self.delivered]

    def _failures(self) -> tuple[Answer, ...]:
        return (
            webhook_error(500, "internal_error"),
            webhook_error(429, "rate_limited", retry_after=1),
            DROP,
        )

    def _receive(self, path: str, headers: Mapping[str, str], raw: bytes) -> Answer:
        try:
            body: Any = _json_or_form(headers, raw, ())
        except (ValueError, UnicodeDecodeError):
            body = None
        with self._lock:
            answer, accepted = self._answer(path, body)
            request = self._record("webhook", path, headers, body, raw, answer)
            if accepted:
                self._delivered.append(request)
            return answer

    def _answer(self, path: str, body: Any) -> tuple[Answer, bool]:
        scripted = self._scripted("webhook")
        if scripted is not None and not scripted.after_delivery:
            return scripted, False
        if path not in self._paths:
            return webhook_error(404, "no_service"), False
        if not isinstance(body, dict):
            return webhook_error(400, "invalid_payload"), False
        problem = validate_message(body)
        if problem is not None:
            return webhook_error(400, problem[0]), False
        if self._image_problem(body) is not None:
            return webhook_error(400, "invalid_blocks"), False
        wait = self._over_limit(path)
        if wait is not None:
            return webhook_error(429, "rate_limited", retry_after=max(1, math.ceil(wait))), False
        return scripted or Answer(200, "ok"), True


# -- Web API -----------------------------------------------------------------------------


RESPONSE_URL_PATH = "/actions/response/"
# Slack: files.getUploadURLExternal answers upload URLs on files.slack.com/upload/v1/...
UPLOAD_PATH = "/upload/v1/"


def _files_args(path: str, headers: Mapping[str, str], raw: bytes) -> dict[str, Any]:
    """The arguments of a files.* call: from the query string (where slack_sdk sends them)
    and the form or JSON body, `files` read as JSON."""
    query = path.split("?", 1)[1] if "?" in path else ""
    args: dict[str, Any] = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    if raw:
        try:
            body = _json_or_form(headers, raw, ())
        except (ValueError, UnicodeDecodeError):
            body = None
        if isinstance(body, dict):
            args.update(body)
    if isinstance(args.get("files"), str):
        try:
            args["files"] = json.loads(args["files"])
        except ValueError:
            args["files"] = None
    return args


class SlackApiServer(_FakeServer):
    """Slack's Web API: chat.postMessage, chat.update and auth.test, with channels; the
    upload flow of files_upload_v2 (files.getUploadURLExternal, the upload URL,
    files.completeUploadExternal; what was uploaded: `uploads()`); and
    the `response_url`s of button presses (`response_url(name)`; what was posted to
    them: `responses(name)`, recorded as method "response_url")."""

    def __init__(
        self,
        *,
        port: int = 0,
        tokens: Sequence[str] = (BOT_TOKEN,),
        channels: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(port=port)
        self.tokens: set[str] = set(tokens)
        self._channels: dict[str, Channel] = {}
        self._seq = 0
        self._uploads: dict[str, Upload] = {}
        for name, channel_id in (channels or {DEFAULT_CHANNEL: DEFAULT_CHANNEL_ID}).items():
            self.add_channel(name, channel_id)

    @property
    def api_url(self) -> str:
        """The Web API base URL (SLACK_API_URL), with its trailing slash."""
        return f"{self.base_url}/api/"

    def add_channel(
        self,
        name: str,
        channel_id: str | None = None,
        *,
        member: bool = True,
        archived: bool = False,
    ) -> str:
        """A channel the workspace has; `member`: the bot is in it. Returns its id."""
        with self._lock:
            cid = channel_id or f"C{len(self._channels) + 1:010d}"
            self._channels[cid] = Channel(cid, name.lstrip("#"), member, archived)
            return cid

    def set_channel(
        self, channel: str, *, member: bool | None = None, archived: bool | None = None
    ) -> None:
        with self._lock:
            found = self._find(channel)
            assert found is not None, f"no channel {channel}"
            if member is not None:
                found.member = member
            if archived is not None:
                found.archived = archived

    def messages(self, channel: str = DEFAULT_CHANNEL) -> list[Message]:
        """The channel's history, oldest first (thread replies only if broadcast)."""
        with self._lock:
            found = self._find(channel)
            return list(found.messages) if found else []

    def message(self, channel: str, ts: str) -> Message | None:
        """A top-level message by ts, in its state after every edit."""
        with self._lock:
            found = self._find(channel)
            if found is None:
                return None
            return next((m for m in found.messages if m.ts == ts and not m.thread_ts), None)

    def replies(self, channel: str, ts: str) -> list[Message]:
        message = self.message(channel, ts)
        return list(message.replies) if message else []

    def calls(self, method: str) -> list[Request]:
        return [r for r in self.requests if r.method == method]

    def uploads(self) -> list[Upload]:
        """Every file reserved so far, in order (uploaded, shared or not)."""
        with self._lock:
            return list(self._uploads.values())

    def response_url(self, name: str = "1") -> str:
        """A press's response_url (Slack: hooks.slack.com/actions/T.../...), served here."""
        return f"{self.base_url}{RESPONSE_URL_PATH}{name}"

    def responses(self, name: str | None = None) -> list[Any]:
        """Bodies posted to response_url `name` (or to any), in order."""
        return [
            r.body
            for r in self.calls("response_url")
            if name is None or r.path == f"{RESPONSE_URL_PATH}{name}"
        ]

    def post_times(self, channel: str = DEFAULT_CHANNEL) -> list[float]:
        """When each accepted chat.postMessage to `channel` arrived (for rate checks)."""
        with self._lock:
            found = self._find(channel)
        if found is None:
            return []
        return [
            r.at
            for r in self.calls("chat.postMessage")
            if r.status == 200
            and isinstance(r.answer, Mapping)
            and r.answer.get("ok")
            and r.answer.get("channel") == found.id
        ]

    def _find(self, channel: str) -> Channel | None:
        if channel in self._channels:
            return self._channels[channel]
        name = channel.lstrip("#")
        return next((c for c in self._channels.values() if c.name == name), None)

    def _failures(self) -> tuple[Answer, ...]:
        return (api_error("internal_error", status=500), ratelimited(1), DROP)

    def _receive(self, path: str, headers: Mapping[str, str], raw: bytes) -> Answer:
        method = path.split("?", 1)[0].removeprefix("/api/")
        if path.startswith(RESPONSE_URL_PATH):
            method = "response_url"
        if path.startswith(UPLOAD_PATH):
            with self._lock:
                answer = self._upload(path.removeprefix(UPLOAD_PATH), raw)
                self._record("upload", path, headers, {"bytes": len(raw)}, raw, answer)
                return answer
        body: Any
        if method.startswith("files."):
            body = _files_args(path, headers, raw)
        else:
            try:
                body = _json_or_form(headers, raw, ("blocks", "attachments"))
            except (ValueError, UnicodeDecodeError):
                body = None
        with self._lock:
            if method == "response_url":
                answer = self._response(body)
            else:
                answer = self._answer(method, headers, body)
            self._record(method, path, headers, body, raw, answer)
            return answer

    def _response(self, body: Any) -> Answer:
        """A post to a response_url: a message for the presser (ephemeral) or the channel."""
        scripted = self._scripted("response_url")
        if scripted is not None:
            return scripted
        if not isinstance(body, dict):
            return Answer(400, {"ok": False, "error": "invalid_payload"})
        if body.get("response_type", "ephemeral") not in ("ephemeral", "in_channel"):
            return Answer(400, {"ok": False, "error": "invalid_response_type"})
        problem = validate_message(body)
        if problem is not None:
            return Answer(400, {"ok": False, "error": problem[0]})
        return Answer(200, {"ok": True})

    def _answer(self, method: str, headers: Mapping[str, str], body: Any) -> Answer:
        handler = {
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "auth.test": self._auth_test,
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
        }.get(method)
        if handler is None:
            return Answer(404, {"ok": False, "error": "unknown_method"})
        scripted = self._scripted(method)
        if scripted is not None and not scripted.after_delivery:
            return scripted
        if not isinstance(body, dict):
            return api_error("invalid_json")
        auth = self._auth_problem(headers, body)
        answer = api_error(auth) if auth else handler(body)
        delivered = isinstance(answer.body, Mapping) and answer.body.get("ok") is True
        return scripted if scripted is not None and delivered else answer

    def _auth_problem(self, headers: Mapping[str, str], body: Mapping[str, Any]) -> str | None:
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        token = value.removeprefix("Bearer ").strip() if value.startswith("Bearer ") else ""
        token = token or str(body.get("token") or "")
        if not token:
            return "not_authed"
        return None if token in self.tokens else "invalid_auth"

    def _auth_test(self, body: Mapping[str, Any]) -> Answer:
        # Slack: auth.test answers the workspace's URL, with its trailing slash.
        return Answer(
            200,
            {
                "ok": True,
                "url": WORKSPACE_URL,
                "team_id": "T000",
                "user_id": "U0FAKEBOT",
                "bot_id": "B0FAKEBOT",
            },
        )

    def _channel_for_write(self, body: Mapping[str, Any], *, by_id: bool) -> Channel | str:
        raw = body.get("channel")
        if not isinstance(raw, str) or not raw:
            return "channel_not_found"
        # chat.update takes a channel id only; chat.postMessage also takes a name.
        channel = self._channels.get(raw) if by_id else self._find(raw)
        if channel is None:
            return "channel_not_found"
        if channel.archived:
            return "is_archived"
        if not channel.member:
            return "not_in_channel"
        return channel

    def _post_message(self, body: Mapping[str, Any]) -> Answer:
        channel = self._channel_for_write(body, by_id=False)
        if isinstance(channel, str):
            return api_error(channel)
        problem = validate_message(body)
        if problem is not None:
            return Answer(200, {"ok": False, "error": problem[0], "errors": [problem[1]]})
        image = self._image_problem(body)
        if image is not None:
            return Answer(200, {"ok": False, "error": "invalid_blocks", "errors": [image]})
        wait = self._over_limit(channel.id)
        if wait is not None:
            return ratelimited(max(1, math.ceil(wait)))
        thread_ts = body.get("thread_ts")
        parent: Message | None = None
        if thread_ts:
            parent = next(
                (m for m in channel.messages if m.ts == thread_ts and not m.thread_ts), None
            )
            if parent is None:
                return api_error("thread_not_found")
        message = Message(
            channel=channel.id,
            ts=self._next_ts(),
            text=str(body.get("text") or ""),
            blocks=list(body.get("blocks") or []),
            attachments=list(body.get("attachments") or []),
            thread_ts=str(thread_ts) if thread_ts else None,
            broadcast=bool(body.get("reply_broadcast")),
        )
        if parent is not None:
            parent.replies.append(message)
        if parent is None or message.broadcast:
            channel.messages.append(message)
        return Answer(
            200, {"ok": True, "channel": channel.id, "ts": message.ts, "message": message.to_json()}
        )

    def _update(self, body: Mapping[str, Any]) -> Answer:
        channel = self._channel_for_write(body, by_id=True)
        if isinstance(channel, str):
            return api_error(channel)
        ts = body.get("ts")
        message = next((m for m in channel.messages if m.ts == ts and not m.thread_ts), None)
        if message is None:
            return api_error("message_not_found")
        problem = validate_message(body)
        if problem is not None:
            return Answer(200, {"ok": False, "error": problem[0], "errors": [problem[1]]})
        image = self._image_problem(body)
        if image is not None:
            return Answer(200, {"ok": False, "error": "invalid_blocks", "errors": [image]})
        # Slack: fields left out of chat.update keep their previous value.
        if "text" in body:
            message.text = str(body["text"] or "")
        if "blocks" in body:
            message.blocks = list(body["blocks"] or [])
        if "attachments" in body:
            message.attachments = list(body["attachments"] or [])
        message.edits += 1
        return Answer(
            200,
            {
                "ok": True,
                "channel": channel.id,
                "ts": message.ts,
                "text": message.text,
                "message": message.to_json(),
            },
        )

    # files_upload_v2: files.getUploadURLExternal, the upload URL, files.completeUploadExternal.

    def _get_upload_url(self, body: Mapping[str, Any]) -> Answer:
        filename = body.get("filename")
        length = str(body.get("length") or "")
        if not isinstance(filename, str) or not filename or not length:
            return api_error("invalid_arguments")
        if not length.isdigit() or int(length) == 0:
            # Slack: missing_argument "typically only occurs when the length provided is 0".
            return api_error("missing_argument")
        file_id = f"F{len(self._uploads) + 1:010d}"
        self._uploads[file_id] = Upload(file_id, filename, int(length))
        return Answer(
            200,
            {
                "ok": True,
                "upload_url": f"{self.base_url}{UPLOAD_PATH}{file_id}",
                "file_id": file_id,
            },
        )

    def _upload(self, file_id: str, raw: bytes) -> Answer:
        """The upload URL: the bytes of a reserved file, answered in plain text."""
        scripted = self._scripted("upload")
        if scripted is not None:
            return scripted
        upload = self._uploads.get(file_id)
        if upload is None or upload.completed:
            return Answer(404, "Not Found")
        if len(raw) != upload.length:
            # Slack documents no answer for this; the upload is refused (step 1 reserved
            # the length, and nothing can renegotiate it), which slack_sdk reports as a
            # failed upload.
            return Answer(400, f"length mismatch: reserved {upload.length}, got {len(raw)}")
        upload.data = raw
        return Answer(200, f"OK - {len(raw)}")

    def _complete_upload(self, body: Mapping[str, Any]) -> Answer:
        files = body.get("files")
        if not isinstance(files, list) or not files:
            return api_error("invalid_arguments")
        uploads: list[tuple[Upload, Any]] = []
        for item in files:
            upload = self._uploads.get(str(item.get("id"))) if isinstance(item, dict) else None
            if upload is None or upload.data is None or upload.completed:
                # An unknown id, a file whose bytes never arrived, or one completed before
                # ("This method can only be called once").
                return api_error("file_not_found")
            uploads.append((upload, item))
        channel: Channel | None = None
        parent: Message | None = None
        if body.get("channel_id"):
            found = self._channel_for_write({"channel": body["channel_id"]}, by_id=True)
            if isinstance(found, str):
                return api_error(found)
            channel = found
            thread_ts = body.get("thread_ts")
            if thread_ts:
                parent = next(
                    (m for m in channel.messages if m.ts == thread_ts and not m.thread_ts), None
                )
                if parent is None:
                    return api_error("thread_not_found")
        shared = []
        for upload, item in uploads:
            upload.completed = True
            upload.title = str(item.get("title") or upload.filename)
            upload.channel = channel.id if channel else None
            upload.thread_ts = parent.ts if parent else None
            shared.append({"id": upload.file_id, "title": upload.title})
        if channel is not None:
            # Slack shares the files as one message (asynchronously; here at once).
            message = Message(
                channel=channel.id,
                ts=self._next_ts(),
                text="",
                blocks=[],
                attachments=[],
                thread_ts=parent.ts if parent else None,
                files=[u.file_id for u, _ in uploads],
            )
            if parent is not None:
                parent.replies.append(message)
            else:
                channel.messages.append(message)
        return Answer(200, {"ok": True, "files": shared})

    def _next_ts(self) -> str:
        # Slack: ts is "seconds.microseconds", unique and increasing within a channel.
        self._seq += 100
        return f"{1_700_000_000 + self._seq // 1_000_000}.{self._seq % 1_000_000:06d}"


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(name="slack_webhook")
def slack_webhook_fixture() -> Iterator[SlackWebhookServer]:
    """A Slack incoming-webhook server; its `url` is the webhook secret to use."""
    with SlackWebhookServer() as server:
        yield server


@pytest.fixture(name="slack_api")
def slack_api_fixture() -> Iterator[SlackApiServer]:
    """A Slack Web API server with channel `#gpu-costs` and token `BOT_TOKEN`."""
    with SlackApiServer() as server:
        yield server
