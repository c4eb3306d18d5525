"""Helpers of the Slack action tests: the router on loopback, signed presses, messages.

The router runs for real (uvicorn on loopback) with real notifiers, against Debian's
Alertmanager (tests.fakes.alertmanager) and the local Slack and PagerDuty servers. A press
is what Slack sends: a form with a block_actions `payload`, signed with the app's signing
secret (HMAC-SHA256 over `v0:{timestamp}:{body}`, computed here independently).
`WiredThread` serves the route itself, the same way Service.app does;
`test_the_wired_service_acts_end_to_end` uses the service exactly as built.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from receiver.config.rules import Rules, parse_rules
from receiver.config.secrets import SecretStore
from receiver.models import (
    Alert,
    CostContext,
    DedupReason,
    Notification,
)
from receiver.notify.base import Notifier
from receiver.notify.slack.bot import SlackBotNotifier
from receiver.notify.slack.buttons import (
    ACTIONS_BLOCK_ID,
    slack_buttons,
)
from receiver.server import Service
from receiver.slack_actions.endpoint import ACTIONS_PATH, actions_route
from tests.fakes.alertmanager import (
    AlertmanagerServer,
)
from tests.fakes.slack import (
    DEFAULT_CHANNEL,
    Message,
    SlackApiServer,
)
from tests.service import TOKEN, ServerThread
from tests.support import wait_until

DATA = Path(__file__).parent.parent / "data" / "actions"


SIGNING = "8f742231b10e8888abcd99yyyzzz85a5"  # a signing secret as Slack shows them


AUTH = {"Authorization": f"Bearer {TOKEN}"}


ALICE = {"id": "U0ALICE01", "username": "alice", "name": "alice", "team_id": "T0FAKE"}


BOB = {"id": "U0BOB0001", "username": "bob", "name": "bob", "team_id": "T0FAKE"}


HOUR = 3600.0


RULES = """
alertmanager: {url: "%(am)s", timeout: %(timeout)s}
destinations:
  bot: {slack: {token: {secret: slack-bot-token}, channel: "#gpu-costs", max_per_second: 0}}
  hook: {slack: {webhook_url: {secret: slack-webhook-url}, max_per_second: 0}}
  pd: {pagerduty: {routing_key: {secret: pagerduty-key}, max_per_minute: 0}}
routes:
  - name: page
    matchers: ['severity="critical"']
    to: [pd, bot, hook]
  - name: rest
    to: [bot, hook]
"""


CRITICAL = (
    {
        "alertname": "BudgetThresholdExceeded",
        "service": "whisper-pyannote-stt",
        "namespace": "ai-models",
        "severity": "critical",
        "team": "finops",
    },
    {"summary": "whisper-pyannote-stt has used 92% of its monthly budget"},
)


WARNING = (
    {
        "alertname": "HighGPUCost",
        "service": "wav2lip-lipsync",
        "namespace": "ai-models",
        "severity": "warning",
        "team": "finops",
    },
    {"summary": "wav2lip-lipsync costs $61.50/hour (threshold $50/hour)"},
)


class WiredThread(ServerThread):
    """ServerThread whose app serves `POST /slack/actions` through actions_route, as
    Service.app does once wired (the same route; the rest goes to the service's app)."""

    def __init__(self, service: Service, port: int) -> None:
        super().__init__(service, port)
        inner = service.app()
        actions = Starlette(routes=[actions_route(service)])

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope["path"] == ACTIONS_PATH:
                await actions(scope, receive, send)
            else:
                await inner(scope, receive, send)

        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=port,
                log_config=None,
                access_log=False,
                lifespan="on",
            )
        )


def with_buttons(service: Service) -> None:
    """Bot notifiers with buttons, as receiver/notify/factory.py builds them once wired."""
    inner = service.notifiers
    secrets, settings = service.secrets, service.settings

    def notifiers(rules: Rules) -> Mapping[str, Notifier]:
        built = dict(inner(rules))
        for name, notifier in built.items():
            spec = rules.destinations[name].slack
            if not isinstance(notifier, SlackBotNotifier) or notifier.buttons is not None:
                continue
            assert spec is not None and spec.token is not None and spec.channel is not None
            # Not used yet, so it holds no connection to close.
            built[name] = SlackBotNotifier(
                name,
                secrets.source(spec.token.secret),
                spec.channel,
                api_url=settings.slack_api_url,
                buttons=slack_buttons(rules, name),
            )
        return built

    service.notifiers = notifiers


@dataclass
class Router:
    """alert-router on loopback, and what a test does with it."""

    server: ServerThread
    slack: SlackApiServer

    @property
    def url(self) -> str:
        return self.server.url

    def post(self, body: dict[str, Any]) -> None:
        r = httpx.post(f"{self.url}/alerts", json=body, headers=AUTH, timeout=10)
        assert r.status_code == 200, r.text

    def message(self, alertname: str, timeout: float = 10.0) -> Message:
        """The bot's top-level message about `alertname`, once it is there."""
        found: list[Message] = []

        def posted() -> bool:
            found[:] = [m for m in self.slack.messages(DEFAULT_CHANNEL) if alertname in m.text]
            return bool(found)

        wait_until(posted, timeout=timeout)
        return found[-1]

    def current(self, message: Message) -> Message:
        """`message` as the channel holds it now, after any edit."""
        now = self.slack.message(message.channel, message.ts)
        assert now is not None
        return now

    def press(
        self,
        message: Message,
        action_id: str,
        *,
        user: Mapping[str, str] = ALICE,
        response: str = "1",
        headers: Mapping[str, str] | None = None,
        secret: str = SIGNING,
        at: float | None = None,
    ) -> httpx.Response:
        body = press_body(self.slack, self.current(message), action_id, user, response)
        sent = {**signed(body, secret=secret, at=at), **(headers or {})}
        return httpx.post(f"{self.url}{ACTIONS_PATH}", content=body, headers=sent, timeout=10)

    def actions(self, action: str, outcome: str) -> float:
        registry = self.server.service.metrics.registry
        value = registry.get_sample_value(
            "alert_router_slack_actions_total", {"action": action, "outcome": outcome}
        )
        return 0.0 if value is None else value


def press_body(
    slack: SlackApiServer,
    message: Message,
    action_id: str,
    user: Mapping[str, str],
    response: str,
) -> str:
    """The form Slack posts when `user` presses button `action_id` of `message`."""
    button = next((b for b in buttons(message) if b["action_id"] == action_id), None)
    assert button is not None, (
        f"no button {action_id} in {[b['action_id'] for b in buttons(message)]}"
    )
    sent = message.to_json()
    # Slack hands attachments back with an id and the colour without its '#'.
    sent["attachments"] = [
        {**a, "id": i + 1, "color": str(a.get("color", "")).lstrip("#")}
        for i, a in enumerate(message.attachments)
    ]
    payload = {
        "type": "block_actions",
        "user": dict(user),
        "api_app_id": "A0ROUTER01",
        "token": "legacy-verification-token",
        "container": {
            "type": "message_attachment",
            "message_ts": message.ts,
            "attachment_id": 1,
            "channel_id": message.channel,
            "is_ephemeral": False,
            "is_app_unfurl": False,
        },
        "trigger_id": "1111.2222.abcd",
        "team": {"id": "T0FAKE", "domain": "gpu-platform"},
        "channel": {"id": message.channel, "name": DEFAULT_CHANNEL.lstrip("#")},
        "message": sent,
        "response_url": slack.response_url(response),
        "actions": [
            {
                "type": "button",
                "action_id": button["action_id"],
                "block_id": ACTIONS_BLOCK_ID,
                "text": button["text"],
                "value": button["value"],
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


def signed(body: str, *, secret: str = SIGNING, at: float | None = None) -> dict[str, str]:
    """Slack's signature headers: v0=HMAC-SHA256(secret, f"v0:{timestamp}:{body}")."""
    timestamp = str(int(time.time() if at is None else at))
    digest = hmac.new(
        secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256
    ).hexdigest()
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": f"v0={digest}",
    }


def buttons(message: Message | Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every button of a message (its actions blocks, top level and in attachments)."""
    if isinstance(message, Message):
        blocks = list(message.blocks)
        attachments = message.attachments
    else:
        blocks = list(message.get("blocks") or [])
        attachments = message.get("attachments") or []
    for attachment in attachments:
        blocks.extend(attachment.get("blocks") or [])
    return [
        element
        for block in blocks
        if block.get("type") == "actions"
        for element in block["elements"]
        if element.get("type") == "button"
    ]


def button_ids(message: Message | Mapping[str, Any]) -> list[str]:
    return [b["action_id"] for b in buttons(message)]


def silences_from(am: AlertmanagerServer) -> list[dict[str, Any]]:
    return [s for s in am.silences() if s["status"]["state"] != "expired"]


def equality(labels: Mapping[str, str]) -> list[tuple[str, str, bool, bool]]:
    return sorted((k, v, False, True) for k, v in labels.items())


def matchers_of(silence: Mapping[str, Any]) -> list[tuple[str, str, bool, bool]]:
    return sorted(
        (m["name"], m["value"], m["isRegex"], m.get("isEqual", True)) for m in silence["matchers"]
    )


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def rules_from(text: str) -> Rules:
    return parse_rules(text, Path("routes.yaml"))


def rendered(rules: Rules, alert_labels: Mapping[str, str], destination: str = "bot") -> Any:
    notifier = SlackBotNotifier(
        destination,
        SecretStore(Path("no-secrets"), environ={}).source("x"),
        "#gpu-costs",
        api_url="http://slack.invalid/api/",
        buttons=slack_buttons(rules, destination),
    )
    alert = Alert(
        fingerprint="fp1",
        status="firing",
        labels=alert_labels,
        annotations={},
        starts_at=datetime(2026, 11, 29, 2, 0, tzinfo=UTC),
        external_url="http://alertmanager.test:9093",
    )
    notification = Notification(alert, destination, "r", DedupReason.FIRST, CostContext())
    return notifier.render([notification])[0]


def tamper(body: str) -> str:
    return body.replace("silence_3600", "silence_86400", 1)
