"""Fixtures of the Slack notifier tests: a secret store and notifiers aimed at the fakes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from receiver.config.secrets import SecretStore
from receiver.notify.slack.bot import SlackBotNotifier
from receiver.notify.slack.webhook import SlackWebhookNotifier
from tests.fakes.slack import (
    BOT_TOKEN,
    DEFAULT_CHANNEL,
    SlackApiServer,
    SlackWebhookServer,
)
from tests.notify.slack.support import (
    write_secret,
)


@pytest.fixture
def store(tmp_path: Path) -> SecretStore:
    return SecretStore(tmp_path, environ={})


@pytest.fixture
def webhook(slack_webhook: SlackWebhookServer, store: SecretStore) -> SlackWebhookNotifier:
    write_secret(store, "slack-webhook-url", slack_webhook.url)
    return SlackWebhookNotifier("finops-slack", store.source("slack-webhook-url"), timeout=2)


@pytest.fixture
def bot(slack_api: SlackApiServer, store: SecretStore) -> SlackBotNotifier:
    write_secret(store, "slack-bot-token", BOT_TOKEN)
    return SlackBotNotifier(
        "finops-bot",
        store.source("slack-bot-token"),
        DEFAULT_CHANNEL,
        api_url=slack_api.api_url,
        timeout=2,
    )


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    for name in ("slack_sdk", "receiver", "urllib3", "http.client"):
        caplog.set_level(logging.DEBUG, logger=name)
    yield caplog
