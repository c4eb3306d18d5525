"""Block Kit rendering: colours, escaping, truncation, cost context, links, digests."""

from __future__ import annotations

import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request

import pytest

from receiver.models import CostContext, DedupReason, Notification, Unit
from receiver.notify.slack.bot import SlackBotNotifier
from receiver.notify.slack.webhook import SlackWebhookNotifier
from tests.fakes.slack import (
    BOT_TOKEN,
    DEFAULT_CHANNEL,
    SlackApiServer,
    SlackWebhookServer,
    strings,
    validate_message,
)
from tests.notify.slack.support import (
    HOSTILE,
    INJECTIONS,
    all_text,
    assert_within_limits,
    context_value,
    deliver,
    links,
    make_alert,
    mrkdwn_tokens,
    notification,
    offline,
)


def test_warning_fires_orange() -> None:
    n = notification(make_alert(labels={"severity": "warning"}))
    notifier = offline()

    (body,) = notifier.render([n])

    assert body["attachments"][0]["color"] == "#F29D38"


@pytest.mark.parametrize("kind", ["webhook", "bot"])
def test_hostile_labels_arrive_escaped_and_truncated(
    kind: str,
    webhook: SlackWebhookNotifier,
    bot: SlackBotNotifier,
    slack_webhook: SlackWebhookServer,
    slack_api: SlackApiServer,
) -> None:
    alert = make_alert(
        labels=HOSTILE,
        annotations={
            "summary": "<!here> pay <https://evil.example|now> & " + "y" * 10_000,
            "description": "<@U123> " + "z" * 10_000,
            "runbook_url": "https://runbooks.example/a?b=<c>|d",
        },
    )
    n = notification(alert, context=CostContext(unavailable=(("cost", "<!channel> " * 500),)))

    if kind == "webhook":
        deliver(webhook, [n])
        (body,) = slack_webhook.messages  # the server accepted it: within Block Kit limits
    else:
        deliver(bot, [n])
        (message,) = slack_api.messages(DEFAULT_CHANNEL)
        body = {"text": message.text, "blocks": message.blocks, "attachments": message.attachments}

    assert_within_limits(body)
    text = all_text(body)
    for injection in INJECTIONS:
        assert injection not in text
    assert "&lt;!channel&gt;" in text
    assert "&lt;@U123&gt;" in text
    assert "&lt;https://evil.example|click&gt;" in text
    assert "R&amp;D &lt;b&gt;" in text
    assert "@here" not in text  # defused with a word joiner: "@\u2060here"
    assert "…" in text  # the 10,000-character values were cut
    for token in mrkdwn_tokens(body):
        # The only tokens Slack will interpret are the ones we made: dates and our links.
        assert token.startswith("!date^") or re.fullmatch(
            r"https?://[^|<>\s]+\|(Graph|Runbook|Dashboard|Silence|Alertmanager)", token
        ), token
    assert links(body)["Runbook"] == "https://runbooks.example/a?b=%3Cc%3E%7Cd"


def test_truncation_never_splits_an_entity() -> None:
    value = "&" * 5000  # every character becomes "&amp;"
    n = notification(make_alert(annotations={"summary": value, "description": value}))
    notifier = offline()

    (body,) = notifier.render([n])

    for text in strings(body):
        stripped = text.replace("&amp;", "").replace("&lt;", "").replace("&gt;", "")
        assert "&" not in stripped, text[-20:]
    assert validate_message(body) is None


def test_cost_context_appears_as_formatted_fields(
    webhook: SlackWebhookNotifier, slack_webhook: SlackWebhookServer
) -> None:
    context = CostContext(
        values=(
            context_value("cost_per_hour", "Cost per hour", 61.5, Unit.USD_PER_HOUR),
            context_value("budget_used", "Budget used", 92.0, Unit.PERCENT),
            context_value("monthly_projection", "", 44280.0, Unit.USD),
        ),
        unavailable=(("cost_per_job", "prometheus timed out after 2s"),),
    )

    deliver(webhook, [notification(make_alert(), context=context)])

    (body,) = slack_webhook.messages
    blocks = body["attachments"][0]["blocks"]
    fields = [f["text"] for b in blocks for f in b.get("fields", [])]
    assert fields == [
        "*Cost per hour*\n$61.50/h",
        "*Budget used*\n92 %",
        "*monthly_projection*\n$44,280",
    ]
    assert "cost context unavailable: cost_per_job (prometheus timed out after 2s)" in all_text(
        body
    )


def test_many_cost_values_stay_within_field_limits() -> None:
    values = tuple(context_value(f"v{i}", "t" * 5000, 1e300, Unit.USD_PER_HOUR) for i in range(100))
    n = notification(make_alert(), context=CostContext(values=values))
    notifier = offline()

    (body,) = notifier.render([n])

    assert_within_limits(body)


def test_links_graph_runbook_dashboard_and_silence(
    webhook: SlackWebhookNotifier, slack_webhook: SlackWebhookServer
) -> None:
    alert = make_alert(
        labels={"service": 'a "quoted" value', "team": "R&D"},
        annotations={
            "summary": "s",
            "runbook_url": "https://runbooks.example/gpu#high-cost",
            "dashboard_url": "https://grafana.example/d/gpu?var-service=a&from=now-6h",
        },
        external_url="http://alertmanager.example:9093/",
    )

    deliver(webhook, [notification(alert)])

    found = links(slack_webhook.messages[0])
    assert found["Graph"] == alert.generator_url
    assert found["Runbook"] == "https://runbooks.example/gpu#high-cost"
    assert found["Dashboard"] == "https://grafana.example/d/gpu?var-service=a&from=now-6h"
    silence = found["Silence"]
    prefix = "http://alertmanager.example:9093/#/silences/new?filter="
    assert silence.startswith(prefix)
    encoded = silence.removeprefix(prefix)
    assert re.fullmatch(r"[A-Za-z0-9%._~-]+", encoded)  # fully URL-encoded
    assert urllib.parse.unquote(encoded) == (
        '{alertname="HighGPUCost",service="a \\"quoted\\" value",severity="critical",team="R&D"}'
    )


def test_silence_link_uses_a_prefix_regex_for_huge_values() -> None:
    alert = make_alert(labels={"huge": "a.b" + "x" * 10_000})
    notifier = offline()

    silence = links(notifier.render([notification(alert)])[0])["Silence"]

    matchers = urllib.parse.unquote(silence.split("filter=", 1)[1])
    assert 'huge=~"a\\\\.bxxx' in matchers
    assert matchers.endswith('.*",service="trainer",severity="critical"}')
    assert len(silence) < 2000


def test_no_silence_link_without_external_url() -> None:
    alert = make_alert(external_url="")
    notifier = offline()

    assert "Silence" not in links(notifier.render([notification(alert)])[0])


def test_digest_of_200_names_every_alert_within_limits(
    webhook: SlackWebhookNotifier, slack_webhook: SlackWebhookServer
) -> None:
    batch = [
        notification(
            make_alert(
                f"GPUAlert{i:03d}",
                status="firing" if i % 3 else "resolved",
                annotations={"summary": f"<!channel> summary {i} " + "s" * 10_000},
            ),
            context=CostContext(
                values=(context_value("cost_per_hour", "Cost/h", 61.5, Unit.USD_PER_HOUR),)
            ),
        )
        for i in range(200)
    ]

    for start in range(0, len(batch), webhook.max_batch):
        chunk = batch[start : start + webhook.max_batch]
        assert deliver(webhook, chunk) == [None] * len(chunk)

    messages = slack_webhook.messages
    assert len(messages) == math.ceil(200 / webhook.max_batch)
    lines: list[str] = []
    for body in messages:
        assert_within_limits(body)
        for block in body["attachments"][0]["blocks"]:
            if block["type"] == "section":
                lines.extend(block["text"]["text"].split("\n"))
    names = [re.search(r"GPUAlert\d{3}", line) for line in lines]
    assert [m.group(0) for m in names if m] == [f"GPUAlert{i:03d}" for i in range(200)]
    assert all("$61.50/h" in line for line in lines)
    assert "<!channel>" not in "".join(all_text(m) for m in messages)


def test_the_largest_digest_of_hostile_alerts_fits_one_message(
    webhook: SlackWebhookNotifier, slack_webhook: SlackWebhookServer
) -> None:
    huge = "<&>" * 4000
    batch = [
        notification(
            make_alert(huge + str(i), labels=HOSTILE, annotations={"summary": huge}),
            context=CostContext(values=(context_value(huge, huge, 1e300, Unit.USD_PER_HOUR),)),
        )
        for i in range(webhook.max_batch)
    ]

    deliver(webhook, batch)

    (body,) = slack_webhook.messages
    assert_within_limits(body)
    assert "100 alerts: 100 firing, 0 resolved" in body["blocks"][0]["text"]["text"]


def test_batch_over_max_batch_is_refused(webhook: SlackWebhookNotifier) -> None:
    batch = [notification(make_alert(f"A{i}")) for i in range(webhook.max_batch + 1)]

    with pytest.raises(ValueError, match="exceeds max_batch"):
        deliver(webhook, batch)


def test_empty_batch_sends_nothing(
    webhook: SlackWebhookNotifier, slack_webhook: SlackWebhookServer
) -> None:
    assert deliver(webhook, []) == []
    assert webhook.render([]) == []
    assert slack_webhook.requests == []


def test_render_and_repr_hold_no_secret(
    webhook: SlackWebhookNotifier, bot: SlackBotNotifier, slack_webhook: SlackWebhookServer
) -> None:
    n = notification(make_alert())
    rendered = json.dumps([webhook.render([n]), bot.render([n])])

    for secret in (slack_webhook.url, slack_webhook.path, BOT_TOKEN):
        assert secret not in rendered
        assert secret not in repr(webhook) + repr(bot)


def test_repeat_notification_says_so() -> None:
    n = Notification(make_alert(), "finops", "expensive", DedupReason.REPEAT)
    notifier = offline()

    assert "still firing: repeat notification" in all_text(notifier.render([n]))
