"""The notifiers' connection: the protocol, one pooled session, proxies from the environment."""

from __future__ import annotations

import asyncio
import base64
import http.server
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from receiver.notify.base import Notifier
from receiver.notify.slack.bot import SlackBotNotifier
from receiver.notify.slack.webhook import SlackWebhookNotifier
from tests.fakes.slack import (
    DEFAULT_CHANNEL,
    SlackApiServer,
    SlackWebhookServer,
)
from tests.notify.slack.support import (
    deliver,
    failure,
    make_alert,
    notification,
)
from tests.support import free_port

T = TypeVar("T")


def test_notifiers_implement_the_protocol(
    webhook: SlackWebhookNotifier, bot: SlackBotNotifier
) -> None:
    notifiers: list[Notifier] = [webhook, bot]
    assert [n.max_batch for n in notifiers] == [webhook.max_batch, bot.max_batch]
    assert all(n.max_batch > 1 for n in notifiers)


async def send_each(
    webhook: SlackWebhookNotifier,
    bot: SlackBotNotifier,
    count: int,
    executor: ThreadPoolExecutor | None = None,
) -> None:
    """`count` messages through each notifier in one loop (with `executor` as its default
    executor), then both closed."""
    if executor is not None:
        asyncio.get_running_loop().set_default_executor(executor)
    try:
        for i in range(count):
            await webhook.notify([notification(make_alert(f"A{i}"))])
            await bot.notify([notification(make_alert(f"A{i}"))])
    finally:
        await webhook.aclose()
        await bot.aclose()


def test_one_pooled_connection_carries_many_messages(
    webhook: SlackWebhookNotifier,
    bot: SlackBotNotifier,
    slack_webhook: SlackWebhookServer,
    slack_api: SlackApiServer,
) -> None:
    asyncio.run(send_each(webhook, bot, 5))

    assert len(slack_webhook.delivered) == 5
    assert len(slack_api.messages(DEFAULT_CHANNEL)) == 5
    assert (slack_webhook.connections, slack_api.connections) == (1, 1)


class CountingExecutor(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.submitted: list[str] = []

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        self.submitted.append(getattr(fn, "__qualname__", repr(fn)))
        return super().submit(fn, *args, **kwargs)


def test_a_send_hands_no_work_to_a_thread(
    webhook: SlackWebhookNotifier,
    bot: SlackBotNotifier,
    slack_webhook: SlackWebhookServer,
    slack_api: SlackApiServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # aiohttp's trust_env would look up the proxy and read netrc in a thread per request.
    clear_proxies(monkeypatch)
    executor = CountingExecutor()

    asyncio.run(send_each(webhook, bot, 3, executor))

    assert len(slack_webhook.delivered) == 3
    assert len(slack_api.messages(DEFAULT_CHANNEL)) == 3
    assert executor.submitted == []


def test_a_closed_notifier_opens_a_new_session_when_used_again(
    webhook: SlackWebhookNotifier, slack_webhook: SlackWebhookServer
) -> None:
    deliver(webhook, [notification(make_alert("First"))])
    deliver(webhook, [notification(make_alert("Second"))])

    assert len(slack_webhook.delivered) == 2


def clear_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("kind", ["webhook", "bot"])
def test_the_proxy_from_the_environment_is_used(
    kind: str,
    webhook: SlackWebhookNotifier,
    bot: SlackBotNotifier,
    slack_webhook: SlackWebhookServer,
    slack_api: SlackApiServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clear_proxies(monkeypatch)
    # A proxy nobody listens on: a send that goes through it fails, refused.
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")
    notifier: Notifier = webhook if kind == "webhook" else bot

    error = failure(notifier, [notification(make_alert())])

    assert error.recoverable
    assert "refused" in str(error).lower()
    assert slack_webhook.requests == [] and slack_api.requests == []


@pytest.mark.parametrize("kind", ["webhook", "bot"])
def test_a_no_proxy_host_is_reached_directly(
    kind: str,
    webhook: SlackWebhookNotifier,
    bot: SlackBotNotifier,
    slack_webhook: SlackWebhookServer,
    slack_api: SlackApiServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clear_proxies(monkeypatch)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    notifier: Notifier = webhook if kind == "webhook" else bot

    deliver(notifier, [notification(make_alert())])

    assert len(slack_webhook.delivered) + len(slack_api.messages(DEFAULT_CHANNEL)) == 1


class ForwardProxy:
    """A plain HTTP forward proxy on loopback: it records each request's target and its
    Proxy-Authorization header, and passes the request on to the target."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                proxy.seen.append((self.path, self.headers.get("Proxy-Authorization")))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                forwarded = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("proxy-authorization", "proxy-connection", "host")
                }
                request = urllib.request.Request(self.path, data=body, headers=forwarded)
                direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                try:
                    with direct.open(request, timeout=5) as answer:
                        status, payload = answer.status, answer.read()
                        kind = answer.headers.get("Content-Type", "text/plain")
                except urllib.error.HTTPError as exc:
                    status, payload = exc.code, exc.read()
                    kind = exc.headers.get("Content-Type", "text/plain")
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def forward_proxy() -> Iterator[ForwardProxy]:
    proxy = ForwardProxy()
    yield proxy
    proxy.close()


def basic(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()


@pytest.mark.parametrize("kind", ["webhook", "bot"])
def test_a_send_goes_through_the_proxy_with_the_credentials_in_its_url(
    kind: str,
    webhook: SlackWebhookNotifier,
    bot: SlackBotNotifier,
    slack_webhook: SlackWebhookServer,
    slack_api: SlackApiServer,
    forward_proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clear_proxies(monkeypatch)
    monkeypatch.setenv("http_proxy", f"http://relay:s3cret@127.0.0.1:{forward_proxy.port}")
    notifier: Notifier = webhook if kind == "webhook" else bot

    deliver(notifier, [notification(make_alert())])

    assert len(slack_webhook.delivered) + len(slack_api.messages(DEFAULT_CHANNEL)) == 1
    [(target, credentials)] = forward_proxy.seen
    assert target.startswith("http://127.0.0.1:")
    assert credentials == basic("relay", "s3cret")


def test_the_proxy_credentials_can_come_from_netrc(
    webhook: SlackWebhookNotifier,
    slack_webhook: SlackWebhookServer,
    forward_proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    clear_proxies(monkeypatch)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login relay password from-netrc\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{forward_proxy.port}")

    deliver(webhook, [notification(make_alert())])

    assert len(slack_webhook.delivered) == 1
    assert [credentials for _, credentials in forward_proxy.seen] == [basic("relay", "from-netrc")]


def test_an_unreachable_proxy_fails_without_naming_its_password(
    webhook: SlackWebhookNotifier,
    slack_webhook: SlackWebhookServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clear_proxies(monkeypatch)
    monkeypatch.setenv("http_proxy", f"http://relay:s3cret@127.0.0.1:{free_port()}")

    error = failure(webhook, [notification(make_alert())])

    assert error.recoverable
    assert "refused" in str(error).lower()
    assert "s3cret" not in str(error)
    assert slack_webhook.requests == []
