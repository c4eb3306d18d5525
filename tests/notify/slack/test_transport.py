"""The notifiers' connection: the protocol, one pooled session, proxies from the environment."""

from __future__ import annotations

import asyncio

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


def test_notifiers_implement_the_protocol(
    webhook: SlackWebhookNotifier, bot: SlackBotNotifier
) -> None:
    notifiers: list[Notifier] = [webhook, bot]
    assert [n.max_batch for n in notifiers] == [webhook.max_batch, bot.max_batch]
    assert all(n.max_batch > 1 for n in notifiers)


def test_one_pooled_connection_carries_many_messages(
    webhook: SlackWebhookNotifier,
    bot: SlackBotNotifier,
    slack_webhook: SlackWebhookServer,
    slack_api: SlackApiServer,
) -> None:
    async def send_five() -> None:
        try:
            for i in range(5):
                await webhook.notify([notification(make_alert(f"A{i}"))])
                await bot.notify([notification(make_alert(f"A{i}"))])
        finally:
            await webhook.aclose()
            await bot.aclose()

    asyncio.run(send_five())

    assert len(slack_webhook.delivered) == 5
    assert len(slack_api.messages(DEFAULT_CHANNEL)) == 5
    assert (slack_webhook.connections, slack_api.connections) == (1, 1)


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
