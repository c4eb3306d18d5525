"""Acting from Slack: the buttons of bot messages and `POST /slack/actions`.

The router runs for real (uvicorn on loopback) with real notifiers, against Debian's
Alertmanager (tests.fakes.alertmanager) and the local Slack and PagerDuty servers. A press
is what Slack sends: a form with a block_actions `payload`, signed with the app's signing
secret (HMAC-SHA256 over `v0:{timestamp}:{body}`, computed here independently).

`make_router` serves the route and gives bot notifiers their buttons itself, the same way
receiver/app.py and receiver/notify/factory.py do once wired (see receiver/actions.py);
`test_the_wired_service_acts_end_to_end` uses the service exactly as built, and passes
once they are wired.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import logging
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from receiver.config.rules import Rules, RulesError, load_rules, parse_rules
from receiver.config.secrets import SecretStore
from receiver.config.settings import Settings
from receiver.metrics import Metrics
from receiver.models import (
    Alert,
    ContextValue,
    CostContext,
    DedupReason,
    Notification,
    Unit,
    labels_fingerprint,
)
from receiver.notify.base import Notifier
from receiver.notify.pagerduty.notifier import dedup_key
from receiver.notify.slack.notifier import (
    ACTIONS_BLOCK_ID,
    MAX_BUTTON_VALUE,
    ActionValue,
    SlackBotNotifier,
    annotate,
    labels_digest,
)
from receiver.runtime import build_service
from receiver.samples import webhook
from receiver.server import Service
from receiver.slack_actions.endpoint import (
    ACTIONS_PATH,
    MAX_BODY_BYTES,
    SIGNING_SECRET,
    actions_route,
    slack_buttons,
)
from tests.fakes.alertmanager import (
    AlertmanagerFactory,
    AlertmanagerServer,
    am_alert,
)
from tests.fakes.pagerduty import ROUTING_KEY, FakePagerDuty
from tests.fakes.slack import (
    BOT_TOKEN,
    DEFAULT_CHANNEL,
    Message,
    SlackApiServer,
    SlackWebhookServer,
    strings,
    validate_message,
)
from tests.service import FAST, TOKEN, ServerThread, make_settings, start_service
from tests.support import HangingServer, free_port, wait_until

DATA = Path(__file__).parent / "data" / "actions"
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


# -- the router --------------------------------------------------------------------------


class _WiredThread(ServerThread):
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
            notifier.close()
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
        server = _WiredThread(service, settings.port).start()
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


# -- buttons on messages -----------------------------------------------------------------


def test_buttons_only_on_firing_bot_messages(
    make_router: Callable[..., Router],
    slack_webhook: SlackWebhookServer,
    fake_pagerduty: FakePagerDuty,
) -> None:
    router = make_router("http://alertmanager.test:9093")
    critical = webhook([CRITICAL], external_url="http://alertmanager.test:9093")
    router.post(critical)
    router.post(webhook([WARNING], external_url="http://alertmanager.test:9093"))

    paged = router.message("BudgetThresholdExceeded")
    not_paged = router.message("HighGPUCost")
    # Routed to PagerDuty as well: Acknowledge; the warning goes to Slack only.
    assert button_ids(paged) == ["silence_3600", "silence_14400", "silence_86400", "acknowledge"]
    assert [b["text"]["text"] for b in buttons(paged)] == [
        "Silence 1h",
        "Silence 4h",
        "Silence 24h",
        "Acknowledge",
    ]
    assert button_ids(not_paged) == ["silence_3600", "silence_14400", "silence_86400"]
    for message in (paged, not_paged):
        assert validate_message({"text": message.text, "attachments": message.attachments}) is None
        for button in buttons(message):
            assert len(button["value"]) <= MAX_BUTTON_VALUE
    value = ActionValue.decode(buttons(paged)[0]["value"])
    assert value.labels == CRITICAL[0]
    assert value.destination == "bot"
    assert value.fingerprint == labels_fingerprint(CRITICAL[0])
    assert ActionValue.decode(buttons(paged)[-1]["value"]).pagerduty == ("pd",)

    # Incoming webhooks: no buttons, the prefilled silence link as before.
    wait_until(lambda: len(slack_webhook.messages) == 2)
    for body in slack_webhook.messages:
        assert button_ids(body) == []
        assert any("/#/silences/new?filter=" in text for text in strings(body))

    # The resolve edits the message: no buttons left.
    wait_until(lambda: len(fake_pagerduty.events) == 1)
    resolved = {
        **critical,
        "status": "resolved",
        "alerts": [
            {**a, "status": "resolved", "endsAt": "2030-01-01T00:00:00.000Z"}
            for a in critical["alerts"]
        ],
    }
    router.post(resolved)
    wait_until(lambda: router.current(paged).edits == 1)
    assert button_ids(router.current(paged)) == []
    assert "RESOLVED" in router.current(paged).text


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


def test_silence_durations_are_configurable_and_need_alertmanager() -> None:
    custom = rules_from(
        """
alertmanager: {url: "http://alertmanager.test:9093"}
destinations:
  bot: {slack: {token: {secret: t}, channel: "#c", silence_durations: [30m, 2h, 7d]}}
  quiet: {slack: {token: {secret: t}, channel: "#c", buttons: false}}
default: bot
"""
    )
    body = rendered(custom, {"alertname": "X"})
    assert button_ids(body) == ["silence_1800", "silence_7200", "silence_604800"]
    assert [b["text"]["text"] for b in buttons(body)] == [
        "Silence 30m",
        "Silence 2h",
        "Silence 168h",
    ]
    # `buttons: false` turns them off for a destination.
    assert button_ids(rendered(custom, {"alertname": "X"}, "quiet")) == []
    # No Alertmanager to silence in: no silence buttons (the link stays), Acknowledge only.
    no_am = rules_from(
        """
destinations:
  bot: {slack: {token: {secret: t}, channel: "#c"}}
  pd: {pagerduty: {routing_key: {secret: k}}}
routes:
  - {name: page, matchers: ['severity="critical"'], to: [pd, bot]}
default: bot
"""
    )
    assert button_ids(rendered(no_am, {"alertname": "X", "severity": "critical"})) == [
        "acknowledge"
    ]
    body = rendered(no_am, {"alertname": "X", "severity": "warning"})
    assert button_ids(body) == []
    assert any("/#/silences/new?filter=" in text for text in strings(body))


def test_labels_too_long_for_a_button_leave_the_value_and_keep_a_digest() -> None:
    rules = rules_from(
        """
alertmanager: {url: "http://alertmanager.test:9093"}
destinations:
  bot: {slack: {token: {secret: t}, channel: "#c"}}
default: bot
"""
    )
    labels = {"alertname": "X", "pods": "p" * 3000}
    body = rendered(rules, labels)
    assert validate_message(body) is None
    value = buttons(body)[0]["value"]
    assert len(value) <= MAX_BUTTON_VALUE
    decoded = ActionValue.decode(value)
    assert decoded.labels is None
    assert decoded.digest == labels_digest(labels)
    assert decoded.alertname == "X"


def test_the_largest_message_comes_back_within_the_body_limit() -> None:
    """A press carries its message back; ours, at their largest, must fit the limit."""
    rules = rules_from(
        """
alertmanager: {url: "http://alertmanager.test:9093"}
destinations:
  bot: {slack: {token: {secret: t}, channel: "#c", silence_durations: [1h, 2h, 4h, 8h, 1d]}}
  pd: {pagerduty: {routing_key: {secret: k}}}
routes:
  - {name: page, to: [pd, bot]}
"""
    )
    notifier = SlackBotNotifier(
        "bot",
        SecretStore(Path("no-secrets"), environ={}).source("x"),
        "#c",
        api_url="http://slack.invalid/api/",
        buttons=slack_buttons(rules, "bot"),
    )
    hostile = '"&<>\\é'
    alert = Alert(
        fingerprint="f" * 64,
        status="firing",
        labels={"alertname": "A" * 200, **{f"label_{i}": hostile * 40 for i in range(40)}},
        annotations={
            "summary": hostile * 200,
            "description": hostile * 1000,
            "runbook_url": "https://runbooks.example/" + "r" * 1970,
            "dashboard_url": "https://dashboards.example/" + "d" * 1970,
        },
        starts_at=datetime(2026, 11, 29, 2, 0, tzinfo=UTC),
        generator_url="https://prometheus.example/graph?" + "g" * 1970,
        external_url="https://alertmanager.example",
    )
    context = CostContext(
        values=tuple(ContextValue(f"c{i}", hostile * 50, 1.0, Unit.USD) for i in range(40)),
        unavailable=tuple((f"u{i}", hostile * 100) for i in range(40)),
    )
    body = notifier.render([Notification(alert, "bot", "page", DedupReason.FIRST, context)])[0]
    assert validate_message(body) is None
    assert len(buttons(body)) == 6
    message = {k: body[k] for k in ("text", "blocks", "attachments")}
    payload = {
        "type": "block_actions",
        "message": message,
        "actions": [{"value": buttons(body)[-1]["value"]}],
        "response_url": "https://hooks.slack.com/actions/T0/1/" + "x" * 24,
    }
    # As Slack encodes it: JSON with every non-ASCII character escaped, then a form.
    form = urllib.parse.urlencode({"payload": json.dumps(payload, ensure_ascii=True)})
    assert len(form) <= MAX_BODY_BYTES / 2


@pytest.mark.parametrize(
    ("name", "message"),
    [
        # Buttons need the Web API: an incoming webhook cannot carry buttons that work.
        (
            "webhook_with_buttons.yaml",
            "3: destinations.s.slack: buttons and silence_durations need a bot destination "
            "(token and channel): incoming-webhook messages keep the silence link",
        ),
        (
            "bad_silence_duration.yaml",
            "6: destinations.s.slack.silence_durations[1]: 'soon' is not a duration: "
            "use e.g. 30s, 5m, 4h, 1d or 1h30m",
        ),
        (
            "short_silence.yaml",
            "6: destinations.s.slack.silence_durations: a silence lasts at least 1m",
        ),
        (
            "too_many_silences.yaml",
            "6: destinations.s.slack.silence_durations: at most 5 silence durations",
        ),
        (
            "bad_alertmanager_timeout.yaml",
            "3: alertmanager.timeout: Input should be greater than 0",
        ),
    ],
)
def test_button_config_errors(name: str, message: str) -> None:
    path = DATA / name
    with pytest.raises(RulesError) as info:
        load_rules(path)
    assert info.value.problems == [f"{path}:{message}"]


def test_annotate_sets_one_status_line_and_removes_buttons() -> None:
    rules = rules_from(
        """
alertmanager: {url: "http://alertmanager.test:9093"}
destinations:
  bot: {slack: {token: {secret: t}, channel: "#c"}}
  pd: {pagerduty: {routing_key: {secret: k}}}
routes:
  - {name: page, to: [pd, bot]}
"""
    )
    body = rendered(rules, {"alertname": "X"})
    sent_back = {
        **body,
        "attachments": [
            {**a, "id": 1, "color": a["color"].lstrip("#")} for a in body["attachments"]
        ],
    }
    once = annotate(sent_back, status_block="s1", text="first", remove_actions=("acknowledge",))
    twice = annotate(once, status_block="s1", text="second")
    assert button_ids(twice) == ["silence_3600", "silence_14400", "silence_86400"]
    texts = list(strings(twice))
    assert "second" in texts and "first" not in texts
    assert twice["attachments"][0]["color"] == body["attachments"][0]["color"]
    assert "id" not in twice["attachments"][0]
    assert validate_message(twice) is None
    # No button left: no (invalid) empty actions block.
    bare = annotate(
        twice,
        status_block="s2",
        text="x",
        remove_actions=("silence_3600", "silence_14400", "silence_86400"),
    )
    assert button_ids(bare) == []
    assert validate_message(bare) is None


def test_action_series_start_at_zero() -> None:
    metrics = Metrics(CollectorRegistry())
    for action in ("silence", "acknowledge"):
        for outcome in ("success", "already_done", "failure"):
            labels = {"action": action, "outcome": outcome}
            value = metrics.registry.get_sample_value("alert_router_slack_actions_total", labels)
            assert value == 0.0
    for outcome in ("unauthorized", "malformed"):
        labels = {"action": "unknown", "outcome": outcome}
        assert metrics.registry.get_sample_value("alert_router_slack_actions_total", labels) == 0


# -- silence -----------------------------------------------------------------------------


def test_signed_press_creates_one_silence_and_edits_the_message(
    make_router: Callable[..., Router], alertmanager: AlertmanagerServer
) -> None:
    router = make_router(alertmanager.url)
    router.post(webhook([WARNING], external_url=alertmanager.url))
    message = router.message("HighGPUCost")

    before = time.time()
    answer = router.press(message, "silence_14400")
    assert answer.status_code == 200
    assert answer.elapsed.total_seconds() < 3

    wait_until(lambda: router.current(message).edits == 1)
    [silence] = silences_from(alertmanager)
    assert matchers_of(silence) == equality(WARNING[0])
    assert silence["createdBy"] == "alice"
    assert f"slack:{message.channel}/{message.ts}" in silence["comment"]
    assert silence["status"]["state"] == "active"
    ends = at(silence["endsAt"]).timestamp()
    assert before + 4 * HOUR - 5 <= ends <= time.time() + 4 * HOUR + 5

    edited = router.current(message).all_text()
    assert "Silenced" in edited
    assert "<@U0ALICE01>" in edited
    assert f"<{alertmanager.url}/#/silences/{silence['id']}|{silence['id']}>" in edited
    assert f"<!date^{int(at(silence['endsAt']).timestamp())}^" in edited
    assert router.slack.responses() == []
    assert router.actions("silence", "success") == 1


def test_pressing_twice_and_slack_retries_make_one_silence(
    make_router: Callable[..., Router], alertmanager: AlertmanagerServer
) -> None:
    router = make_router(alertmanager.url)
    router.post(webhook([WARNING], external_url=alertmanager.url))
    message = router.message("HighGPUCost")

    assert router.press(message, "silence_3600").status_code == 200
    assert router.press(message, "silence_3600", user=BOB).status_code == 200
    # Slack's retry of a delivery: signed anew, with X-Slack-Retry-Num.
    retry = router.press(message, "silence_3600", headers={"X-Slack-Retry-Num": "1"})
    assert retry.status_code == 200
    # A double click that reaches the router twice at once.
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: router.press(message, "silence_3600"), range(4)))
    assert [a.status_code for a in answers] == [200] * 4

    [silence] = silences_from(alertmanager)
    assert len(alertmanager.silences()) == 1
    assert router.actions("silence", "success") == 1
    assert router.actions("silence", "already_done") == 6
    # Bob learns it was silenced already; the retry says nothing more to anyone.
    told = [r["text"] for r in router.slack.responses()]
    assert len(told) == 5 and all("Already silenced" in t for t in told)
    assert all(r["response_type"] == "ephemeral" for r in router.slack.responses())

    # A longer silence from the same message extends that silence: still one, same ID.
    assert router.press(message, "silence_86400").status_code == 200
    [extended] = silences_from(alertmanager)
    assert extended["id"] == silence["id"]
    assert at(extended["endsAt"]).timestamp() >= time.time() + 24 * HOUR - 10
    wait_until(lambda: router.actions("silence", "success") == 2)


def test_a_silenced_alert_stops_reaching_the_router(
    make_router: Callable[..., Router], alertmanager_factory: AlertmanagerFactory
) -> None:
    am_port = free_port()
    router = make_router(f"http://127.0.0.1:{am_port}")
    am = alertmanager_factory(
        f"{router.url}/alerts",
        TOKEN,
        port=am_port,
        group_wait="1s",
        group_interval="1s",
        repeat_interval="2s",
    )
    labels, annotations = WARNING
    am.post_alerts([am_alert(labels, annotations)])
    message = router.message("HighGPUCost", timeout=20)
    # Before the silence Alertmanager repeats the alert to the router: the check can fail.
    wait_until(lambda: am.notifications()["sent"] >= 3, timeout=20)

    assert router.press(message, "silence_3600").status_code == 200
    [silence] = silences_from(am)
    assert matchers_of(silence) == equality(labels)
    wait_until(lambda: am.alerts()[0]["status"]["state"] == "suppressed", timeout=10)
    assert am.alerts()[0]["status"]["silencedBy"] == [silence["id"]]

    time.sleep(1.5)  # a flush already under way when the silence came
    sent = am.notifications()["sent"]
    webhooks = router.server.service.metrics.registry.get_sample_value(
        "alert_router_webhooks_total", {"code": "200"}
    )
    time.sleep(6)  # three repeat intervals
    assert am.notifications()["sent"] == sent
    after = router.server.service.metrics.registry.get_sample_value(
        "alert_router_webhooks_total", {"code": "200"}
    )
    assert after == webhooks
    # The router itself saw the alert while Alertmanager still sent it (its own labels).
    assert ActionValue.decode(buttons(message)[0]["value"]).labels == labels


def test_labels_too_long_for_the_button_are_found_in_alertmanager(
    make_router: Callable[..., Router], alertmanager_factory: AlertmanagerFactory
) -> None:
    am_port = free_port()
    router = make_router(f"http://127.0.0.1:{am_port}")
    am = alertmanager_factory(f"{router.url}/alerts", TOKEN, port=am_port)
    labels = {**WARNING[0], "pods": ",".join(f"trainer-{i:04d}" for i in range(300))}
    am.post_alerts([am_alert(labels, WARNING[1])])
    message = router.message("HighGPUCost", timeout=20)
    assert ActionValue.decode(buttons(message)[0]["value"]).labels is None

    assert router.press(message, "silence_3600").status_code == 200
    wait_until(lambda: router.current(message).edits == 1)
    [silence] = silences_from(am)
    assert matchers_of(silence) == equality(labels)


# -- acknowledge -------------------------------------------------------------------------


def test_acknowledge_sends_the_dedup_key_and_shows_who(
    make_router: Callable[..., Router],
    alertmanager: AlertmanagerServer,
    fake_pagerduty: FakePagerDuty,
) -> None:
    router = make_router(alertmanager.url)
    body = webhook([CRITICAL], external_url=alertmanager.url)
    router.post(body)
    message = router.message("BudgetThresholdExceeded")
    alert = Alert.from_json({**body["alerts"][0], "externalURL": alertmanager.url})
    key = dedup_key(alert)
    wait_until(lambda: fake_pagerduty.incident(key) is not None)
    wait_until(
        lambda: router.server.call(lambda: router.server.service.store.depths())["outbox"] == 0
    )

    assert router.press(message, "acknowledge", user=BOB).status_code == 200

    wait_until(lambda: router.current(message).edits == 1)
    acknowledge = fake_pagerduty.events[-1]
    assert acknowledge == {
        "routing_key": ROUTING_KEY,
        "event_action": "acknowledge",
        "dedup_key": key,
    }
    incident = fake_pagerduty.incident(key)
    assert incident is not None and incident.status == "acknowledged"
    edited = router.current(message)
    assert "Acknowledged" in edited.all_text()
    assert "<@U0BOB0001>" in edited.all_text()
    # The Acknowledge button is gone; the silence buttons stay.
    assert button_ids(edited) == ["silence_3600", "silence_14400", "silence_86400"]
    assert router.actions("acknowledge", "success") == 1
    assert silences_from(alertmanager) == []


def test_pagerduty_refusing_the_acknowledge_is_shown_and_nothing_claimed(
    make_router: Callable[..., Router],
    alertmanager: AlertmanagerServer,
    fake_pagerduty: FakePagerDuty,
) -> None:
    router = make_router(alertmanager.url)
    body = webhook([CRITICAL], external_url=alertmanager.url)
    router.post(body)
    message = router.message("BudgetThresholdExceeded")
    key = dedup_key(Alert.from_json(body["alerts"][0]))
    wait_until(lambda: fake_pagerduty.incident(key) is not None)
    wait_until(
        lambda: router.server.call(lambda: router.server.service.store.depths())["outbox"] == 0
    )
    fake_pagerduty.fail(400, body={"status": "invalid event", "message": "Event object is invalid"})

    assert router.press(message, "acknowledge").status_code == 200

    wait_until(lambda: len(router.slack.responses("1")) == 1)
    [told] = router.slack.responses("1")
    assert told["response_type"] == "ephemeral"
    assert told["replace_original"] is False
    assert "Nothing acknowledged" in told["text"]
    assert "HTTP 400" in told["text"]
    assert ROUTING_KEY not in told["text"]
    assert router.current(message).edits == 0
    assert "acknowledge" in button_ids(router.current(message))
    assert router.actions("acknowledge", "failure") == 1
    incident = fake_pagerduty.incident(key)
    assert incident is not None and incident.status == "triggered"


def test_acknowledge_before_pagerduty_was_paged_is_refused(
    make_router: Callable[..., Router],
    alertmanager: AlertmanagerServer,
    fake_pagerduty: FakePagerDuty,
) -> None:
    # PagerDuty refuses the trigger for good (a dead letter): the ledger has no page.
    fake_pagerduty.fail(400)
    router = make_router(alertmanager.url)
    router.post(webhook([CRITICAL], external_url=alertmanager.url))
    message = router.message("BudgetThresholdExceeded")
    wait_until(
        lambda: (
            router.server.call(lambda: router.server.service.store.depths())["dead_letters"] == 1
        )
    )
    requests = len(fake_pagerduty.requests)

    assert router.press(message, "acknowledge").status_code == 200

    wait_until(lambda: len(router.slack.responses()) == 1)
    assert "pd has not been paged for this alert" in router.slack.responses()[0]["text"]
    assert len(fake_pagerduty.requests) == requests
    assert router.current(message).edits == 0


# -- refused requests --------------------------------------------------------------------


def _tamper(body: str) -> str:
    return body.replace("silence_3600", "silence_86400", 1)


@pytest.mark.parametrize(
    "case",
    [
        "wrong-secret",
        "no-timestamp",
        "no-signature",
        "old-timestamp",
        "future-timestamp",
        "tampered-body",
        "replayed",
        "bearer-token-only",
        "not-a-number",
        "unicode-signature",
    ],
)
def test_unverified_requests_get_401_and_change_nothing(
    case: str,
    make_router: Callable[..., Router],
    alertmanager: AlertmanagerServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    router = make_router(alertmanager.url)
    router.post(webhook([WARNING], external_url=alertmanager.url))
    message = router.message("HighGPUCost")
    body = press_body(router.slack, message, "silence_3600", ALICE, "1")
    headers = signed(body)
    url = f"{router.url}{ACTIONS_PATH}"
    if case == "wrong-secret":
        headers = signed(body, secret="another-apps-signing-secret")
    elif case == "no-timestamp":
        del headers["X-Slack-Request-Timestamp"]
    elif case == "no-signature":
        del headers["X-Slack-Signature"]
    elif case == "old-timestamp":
        headers = signed(body, at=time.time() - 6 * 60)  # Slack: 5 minutes at most
    elif case == "future-timestamp":
        headers = signed(body, at=time.time() + 6 * 60)
    elif case == "tampered-body":
        body = _tamper(body)
    elif case == "replayed":
        first = httpx.post(url, content=body, headers=headers, timeout=10)
        assert first.status_code == 200
        wait_until(lambda: len(silences_from(alertmanager)) == 1)
    elif case == "bearer-token-only":
        headers = {"Content-Type": "application/x-www-form-urlencoded", **AUTH}
    elif case == "not-a-number":
        headers["X-Slack-Request-Timestamp"] = "yesterday"
    else:
        headers["X-Slack-Signature"] = "v0=é" + headers["X-Slack-Signature"][4:]
    before = len(silences_from(alertmanager))
    edits = router.current(message).edits

    # Headers as bytes: a client can send any byte, not only ASCII.
    raw = [(k.encode(), v.encode("latin-1")) for k, v in headers.items()]
    answer = httpx.post(url, content=body.encode(), headers=raw, timeout=10)

    assert answer.status_code == 401, answer.text
    time.sleep(0.3)
    assert len(silences_from(alertmanager)) == before
    assert router.current(message).edits == edits
    assert router.slack.responses() == [] or case == "replayed"
    assert router.actions("unknown", "unauthorized") == 1
    assert SIGNING not in caplog.text
    assert SIGNING not in answer.text


def test_without_a_signing_secret_every_press_is_refused(
    make_router: Callable[..., Router],
    alertmanager: AlertmanagerServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    router = make_router(alertmanager.url, signing=None)
    router.post(webhook([WARNING], external_url=alertmanager.url))
    message = router.message("HighGPUCost")
    answer = router.press(message, "silence_3600")
    assert answer.status_code == 401
    assert "slack-signing-secret" in caplog.text
    assert silences_from(alertmanager) == []


def test_oversized_and_malformed_requests(
    make_router: Callable[..., Router], alertmanager: AlertmanagerServer
) -> None:
    router = make_router(alertmanager.url)
    url = f"{router.url}{ACTIONS_PATH}"
    huge = "payload=" + "x" * MAX_BODY_BYTES
    assert httpx.post(url, content=huge, headers=signed(huge), timeout=10).status_code == 413
    for body in ("payload=not-json", "other=1", "payload=" + urllib.parse.quote('{"type": 1}')):
        answer = httpx.post(url, content=body, headers=signed(body), timeout=10)
        assert answer.status_code in (200, 400), answer.text
    bad_value = "payload=" + urllib.parse.quote(
        json.dumps(
            {
                "type": "block_actions",
                "actions": [{"action_id": "silence_3600", "value": "{}"}],
                "response_url": router.slack.response_url(),
            }
        )
    )
    answer = httpx.post(url, content=bad_value, headers=signed(bad_value), timeout=10)
    assert answer.status_code == 400
    assert router.actions("unknown", "malformed") == 4
    assert silences_from(alertmanager) == []


# -- failures ----------------------------------------------------------------------------


def test_alertmanager_down_tells_the_user_and_changes_nothing(
    make_router: Callable[..., Router], alertmanager: AlertmanagerServer
) -> None:
    router = make_router(alertmanager.url)
    router.post(webhook([WARNING], external_url=alertmanager.url))
    message = router.message("HighGPUCost")
    alertmanager.stop()

    assert router.press(message, "silence_3600").status_code == 200

    wait_until(lambda: len(router.slack.responses("1")) == 1)
    [told] = router.slack.responses("1")
    assert told == {
        "response_type": "ephemeral",
        "replace_original": False,
        "text": told["text"],
    }
    assert "No silence" in told["text"]
    assert "cannot be reached" in told["text"]
    assert router.current(message).edits == 0
    assert router.actions("silence", "failure") == 1
    alertmanager.start()
    assert silences_from(alertmanager) == []


def test_a_hanging_alertmanager_still_gets_slack_its_answer_in_time(
    make_router: Callable[..., Router],
) -> None:
    hanging = HangingServer()
    try:
        router = make_router(hanging.url, timeout="4s")
        router.post(webhook([WARNING], external_url=hanging.url))
        message = router.message("HighGPUCost")

        started = time.monotonic()
        answer = router.press(message, "silence_3600")
        assert answer.status_code == 200
        assert time.monotonic() - started < 3  # Slack: answer within 3 seconds

        wait_until(lambda: len(router.slack.responses()) == 1, timeout=10)
        assert "did not answer within 4s" in router.slack.responses()[0]["text"]
        assert router.current(message).edits == 0
    finally:
        hanging.close()


def test_the_message_is_not_brought_back_after_a_resolve(
    make_router: Callable[..., Router], alertmanager: AlertmanagerServer
) -> None:
    router = make_router(alertmanager.url)
    body = webhook([WARNING], external_url=alertmanager.url)
    router.post(body)
    message = router.message("HighGPUCost")
    stale = copy.deepcopy(router.current(message))  # the fake edits its messages in place
    router.post(
        {
            **body,
            "status": "resolved",
            "alerts": [
                {**a, "status": "resolved", "endsAt": "2030-01-01T00:00:00.000Z"}
                for a in body["alerts"]
            ],
        }
    )
    wait_until(lambda: router.current(message).edits == 1)

    # A press on the message as it was before the resolve (a client not yet refreshed).
    form = press_body(router.slack, stale, "silence_3600", ALICE, "1")
    answer = httpx.post(f"{router.url}{ACTIONS_PATH}", content=form, headers=signed(form))
    assert answer.status_code == 200

    wait_until(lambda: len(router.slack.responses()) == 1)
    assert "the alert has resolved" in router.slack.responses()[0]["text"]
    assert len(silences_from(alertmanager)) == 1
    assert router.current(message).edits == 1
    assert "RESOLVED" in router.current(message).text


def test_actions_are_logged_with_who_what_and_which_alert(
    make_router: Callable[..., Router],
    alertmanager: AlertmanagerServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    router = make_router(alertmanager.url)
    router.post(webhook([WARNING], external_url=alertmanager.url))
    message = router.message("HighGPUCost")
    router.press(message, "silence_3600")
    wait_until(lambda: any(r.getMessage() == "slack action" for r in caplog.records))
    record = next(r for r in caplog.records if r.getMessage() == "slack action")
    fields = record.__dict__
    assert fields["action"] == "silence"
    assert fields["outcome"] == "success"
    assert fields["user"] == "alice"
    assert fields["user_id"] == "U0ALICE01"
    assert fields["alertname"] == "HighGPUCost"
    assert fields["fingerprint"] == labels_fingerprint(WARNING[0])
    assert fields["duration"] == "1h"
    assert fields["silence_id"] == silences_from(alertmanager)[0]["id"]
    for secret in (SIGNING, BOT_TOKEN, ROUTING_KEY):
        assert secret not in caplog.text


# -- the service as built ----------------------------------------------------------------


def test_the_wired_service_acts_end_to_end(
    tmp_path: Path,
    slack_api: SlackApiServer,
    slack_webhook: SlackWebhookServer,
    fake_pagerduty: FakePagerDuty,
    alertmanager: AlertmanagerServer,
) -> None:
    """The service exactly as receiver.runtime builds it: passes once receiver/app.py
    serves actions_route and receiver/notify/factory.py gives bot notifiers buttons."""
    config = tmp_path / "routes.yaml"
    config.write_text(RULES % {"am": alertmanager.url, "timeout": "1s"})
    settings = make_settings(
        tmp_path, config, slack_api_url=slack_api.api_url, pagerduty_events_url=fake_pagerduty.url
    )
    for key, value in (
        ("slack-webhook-url", slack_webhook.url),
        ("slack-bot-token", BOT_TOKEN),
        ("pagerduty-key", ROUTING_KEY),
        (SIGNING_SECRET, SIGNING),
    ):
        (settings.secrets_dir / key).write_text(value)
    server, _ = start_service(settings, dry_run=False, tuning=FAST)
    try:
        router = Router(server, slack_api)
        body = webhook([CRITICAL], external_url=alertmanager.url)
        router.post(body)
        message = router.message("BudgetThresholdExceeded")
        assert button_ids(message), "no buttons: wire slack_buttons into notify/factory.py"
        key = dedup_key(Alert.from_json(body["alerts"][0]))
        wait_until(lambda: fake_pagerduty.incident(key) is not None)
        wait_until(lambda: server.call(lambda: server.service.store.depths())["outbox"] == 0)

        answer = router.press(message, "silence_3600")
        assert answer.status_code == 200, "wire actions_route into Service.app in app.py"
        wait_until(lambda: len(silences_from(alertmanager)) == 1)
        assert router.press(message, "acknowledge").status_code == 200
        wait_until(lambda: fake_pagerduty.events[-1]["event_action"] == "acknowledge")
        wait_until(lambda: router.current(message).edits == 2)
        text = router.current(message).all_text()
        assert "Silenced" in text and "Acknowledged" in text
        metrics = httpx.get(f"{router.url}/metrics", timeout=5).text
        assert 'alert_router_slack_actions_total{action="silence",outcome="success"} 1.0' in metrics
    finally:
        server.stop()


def test_a_press_in_flight_at_shutdown_is_finished_first(
    make_router: Callable[..., Router],
) -> None:
    hanging = HangingServer()
    try:
        router = make_router(hanging.url, timeout="4s")
        router.post(webhook([WARNING], external_url=hanging.url))
        message = router.message("HighGPUCost")
        answer = router.press(message, "silence_3600")
        assert answer.status_code == 200  # answered in time; the press goes on
        assert router.slack.responses() == []
        router.server.stop()
        # Shutdown waited for the press to end (Alertmanager's 4 s timeout): the presser
        # is told, rather than the work being dropped half-done.
        assert len(router.slack.responses()) == 1
        assert "did not answer within 4s" in router.slack.responses()[0]["text"]
        assert router.current(message).edits == 0
    finally:
        hanging.close()
