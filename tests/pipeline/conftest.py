"""Fixtures of the pipeline's tests: a router on a loopback port, sending to local servers
that speak Slack's and PagerDuty's protocols."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from receiver.config.settings import Settings
from tests.fakes.pagerduty import ROUTING_KEY, FakePagerDuty
from tests.fakes.slack import (
    BOT_TOKEN,
    SlackApiServer,
    SlackWebhookServer,
)
from tests.pipeline.router import (
    RULES,
    Router,
)
from tests.service import FAST, ServerThread, make_settings, start_service


@pytest.fixture
def make_router(
    tmp_path: Path, slack_webhook: SlackWebhookServer, slack_api: SlackApiServer
) -> Iterator[Callable[..., Router]]:
    started: list[ServerThread] = []

    def make(pagerduty: FakePagerDuty, slack_rate: float = 0, **overrides: Any) -> Router:
        config = tmp_path / "routes.yaml"
        config.write_text(RULES % {"slack_rate": slack_rate})
        settings: Settings = make_settings(
            tmp_path,
            config,
            slack_api_url=slack_api.api_url,
            pagerduty_events_url=pagerduty.url,
            **overrides,
        )
        secrets = settings.secrets_dir
        (secrets / "slack-webhook-url").write_text(slack_webhook.url)
        (secrets / "slack-bot-token").write_text(BOT_TOKEN)
        (secrets / "pagerduty-key").write_text(ROUTING_KEY)
        server, _ = start_service(settings, dry_run=False, tuning=FAST)
        started.append(server)
        return Router(server)

    yield make
    for server in started:
        server.stop()
