"""Fixtures of the Slack action tests: the router factory and a real Alertmanager."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from receiver.config.secrets import SecretStore
from receiver.config.settings import Settings
from receiver.runtime import build_service
from receiver.slack_actions.verify import SIGNING_SECRET
from tests.fakes.alertmanager import (
    AlertmanagerFactory,
    AlertmanagerServer,
)
from tests.fakes.pagerduty import ROUTING_KEY, FakePagerDuty
from tests.fakes.slack import (
    BOT_TOKEN,
    SlackApiServer,
    SlackWebhookServer,
)
from tests.service import FAST, TOKEN, ServerThread, make_settings
from tests.slack_actions.support import (
    RULES,
    SIGNING,
    Router,
    WiredThread,
    with_buttons,
)
from tests.support import free_port


@pytest.fixture
def make_router(
    tmp_path: Path,
    slack_api: SlackApiServer,
    slack_webhook: SlackWebhookServer,
    fake_pagerduty: FakePagerDuty,
) -> Iterator[Callable[..., Router]]:
    """`make(alertmanager_url, *, timeout="1s", rules=RULES, signing=SIGNING)` -> Router."""
    started: list[ServerThread] = []

    def make(
        alertmanager_url: str,
        *,
        timeout: str = "1s",
        rules: str = RULES,
        signing: str | None = SIGNING,
    ) -> Router:
        config = tmp_path / "routes.yaml"
        config.write_text(rules % {"am": alertmanager_url, "timeout": timeout})
        settings: Settings = make_settings(
            tmp_path,
            config,
            slack_api_url=slack_api.api_url,
            pagerduty_events_url=fake_pagerduty.url,
        )
        secrets = settings.secrets_dir
        (secrets / "slack-webhook-url").write_text(slack_webhook.url)
        (secrets / "slack-bot-token").write_text(BOT_TOKEN)
        (secrets / "pagerduty-key").write_text(ROUTING_KEY)
        if signing is not None:
            (secrets / SIGNING_SECRET).write_text(signing + "\n")
        service = build_service(settings, secrets=SecretStore(settings.secrets_dir, environ={}))
        service.tuning = replace(FAST, dedup_window=settings.dedup_window)
        with_buttons(service)
        server = WiredThread(service, settings.port).start()
        started.append(server)
        return Router(server, slack_api)

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def alertmanager(alertmanager_factory: AlertmanagerFactory) -> AlertmanagerServer:
    """A real Alertmanager for silences (its webhook points nowhere: alerts go to the
    router directly in these tests)."""
    return alertmanager_factory(f"http://127.0.0.1:{free_port()}/alerts", TOKEN)
