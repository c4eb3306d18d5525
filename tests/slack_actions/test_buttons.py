"""The buttons on bot messages: which show, what their values carry, annotate."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from receiver.config.rules import RulesError, load_rules
from receiver.config.secrets import SecretStore
from receiver.models import (
    Alert,
    ContextValue,
    CostContext,
    DedupReason,
    Notification,
    Unit,
    labels_fingerprint,
)
from receiver.notify.slack.bot import SlackBotNotifier
from receiver.notify.slack.buttons import (
    MAX_BUTTON_VALUE,
    ActionValue,
    annotate,
    labels_digest,
    slack_buttons,
)
from receiver.samples import webhook
from receiver.slack_actions.endpoint import MAX_BODY_BYTES
from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.slack import (
    SlackWebhookServer,
    strings,
    validate_message,
)
from tests.slack_actions.support import (
    CRITICAL,
    DATA,
    WARNING,
    Router,
    button_ids,
    buttons,
    rendered,
    rules_from,
)
from tests.support import wait_until


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
