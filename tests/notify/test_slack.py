"""The Slack notifiers against local servers that speak Slack's protocols over loopback."""

from __future__ import annotations

import asyncio
import html
import json
import logging
import math
import os
import re
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from receiver.config.secrets import SecretStore
from receiver.models import Alert, ContextValue, CostContext, DedupReason, Notification, Unit
from receiver.notify.base import Notifier, NotifyError, Ref
from receiver.notify.slack.notifier import SlackBotNotifier, SlackWebhookNotifier
from tests.fakes.slack import (
    BOT_TOKEN,
    DEFAULT_CHANNEL,
    DEFAULT_CHANNEL_ID,
    DROP,
    MAX_BLOCKS,
    MAX_FIELD_TEXT,
    MAX_HEADER_TEXT,
    MAX_SECTION_TEXT,
    Answer,
    SlackApiServer,
    SlackWebhookServer,
    api_error,
    max_per_window,
    min_interval,
    ratelimited,
    strings,
    validate_message,
    webhook_error,
)
from tests.support import free_port

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HOSTILE = {
    "alertname": "HighGPUCost",
    "team": "<!channel>",
    "owner": "<@U123>",
    "link": "<https://evil.example|click>",
    "amp": "R&D <b>",
    "here": "@here and <!here>",
    "huge": "x" * 10_000,
}
INJECTIONS = ("<!channel>", "<!here>", "<@U123>", "<https://evil", "<b>")


# -- helpers -----------------------------------------------------------------------------


def make_alert(
    name: str = "HighGPUCost",
    *,
    status: str = "firing",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    external_url: str = "http://alertmanager.example:9093",
) -> Alert:
    return Alert(
        fingerprint=f"fp-{name}",
        status=status,
        labels={"alertname": name, "service": "trainer", "severity": "critical", **(labels or {})},
        annotations=(
            {"summary": f"{name} on trainer", "runbook_url": "https://runbooks.example/gpu"}
            if annotations is None
            else annotations
        ),
        starts_at=T0,
        ends_at=T0 + timedelta(hours=1, minutes=20) if status == "resolved" else None,
        generator_url="http://prometheus.example:9090/graph?g0.expr=service_cost_per_hour+%3E+50",
        external_url=external_url,
    )


def notification(
    alert: Alert, *, context: CostContext | None = None, ref: Ref | None = None
) -> Notification:
    return Notification(
        alert=alert,
        destination="finops",
        route="expensive",
        reason=DedupReason.FIRST if alert.firing else DedupReason.RESOLVED,
        context=context or CostContext(),
        ref=ref,
    )


def resolved(n: Notification, ref: Ref | None) -> Notification:
    a = n.alert
    alert = make_alert(a.name, status="resolved", labels=a.labels, annotations=a.annotations)
    return notification(alert, context=n.context, ref=ref)


def deliver(notifier: Notifier, batch: Sequence[Notification]) -> list[Ref | None]:
    return list(asyncio.run(notifier.notify(batch)))


def failure(notifier: Notifier, batch: Sequence[Notification]) -> NotifyError:
    with pytest.raises(NotifyError) as info:
        deliver(notifier, batch)
    return info.value


def write_secret(store: SecretStore, key: str, value: str) -> None:
    """Write a secret file so that its mtime surely changes (as a Secret update does)."""
    path = store.directory / key
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(value + "\n", encoding="utf-8")
    later = max(before, path.stat().st_mtime_ns) + 2_000_000_000
    os.utime(path, ns=(later, later))


def all_text(body: Any) -> str:
    return "\n".join(strings(body))


def mrkdwn_tokens(body: Any) -> list[str]:
    """Every `<...>` token Slack would interpret in the message."""
    return [token for text in strings(body) for token in re.findall(r"<([^<>]*)>", text)]


def links(body: Any) -> dict[str, str]:
    """Link label -> URL (as a browser would open it) from `<url|label>` tokens."""
    found: dict[str, str] = {}
    for token in mrkdwn_tokens(body):
        if "|" in token and token.startswith("http"):
            url, label = token.split("|", 1)
            found[label] = html.unescape(url)
    return found


def offline() -> SlackWebhookNotifier:
    """A notifier for render() alone: it has no secret and never sends."""
    return SlackWebhookNotifier(
        "offline", SecretStore(Path(__file__).parent / "no-secrets", environ={}).source("x")
    )


def context_value(name: str, title: str, value: float, unit: Unit) -> ContextValue:
    return ContextValue(name=name, title=title, value=value, unit=unit)


def assert_within_limits(body: Mapping[str, Any]) -> None:
    assert validate_message(body) is None
    blocks = list(body.get("blocks", []))
    for attachment in body.get("attachments", []):
        blocks.extend(attachment.get("blocks", []))
    assert len(blocks) <= MAX_BLOCKS
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= MAX_HEADER_TEXT
        if block["type"] == "section":
            assert len(block.get("text", {}).get("text", "")) <= MAX_SECTION_TEXT
            assert all(len(f["text"]) <= MAX_FIELD_TEXT for f in block.get("fields", []))


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


def test_notifiers_implement_the_protocol(
    webhook: SlackWebhookNotifier, bot: SlackBotNotifier
) -> None:
    notifiers: list[Notifier] = [webhook, bot]
    assert [n.max_batch for n in notifiers] == [webhook.max_batch, bot.max_batch]
    assert all(n.max_batch > 1 for n in notifiers)


# -- incoming webhook: answers -----------------------------------------------------------


def test_webhook_delivers_one_block_kit_message(
    webhook: SlackWebhookNotifier, slack_webhook: SlackWebhookServer
) -> None:
    n = notification(make_alert())

    assert deliver(webhook, [n]) == [None]

    (request,) = slack_webhook.delivered
    assert request.path == slack_webhook.path
    assert (request.header("content-type") or "").startswith("application/json")
    assert request.body == webhook.render([n])[0]
    assert request.body["text"] == "[FIRING] HighGPUCost: HighGPUCost on trainer"
    (attachment,) = request.body["attachments"]
    assert attachment["color"] == "#D7263D"  # firing, critical: red
    assert "FIRING: HighGPUCost" in request.body["blocks"][0]["text"]["text"]


@pytest.mark.parametrize(
    ("answer", "recoverable", "retry_after"),
    [
        # Slack: malformed JSON or a message it cannot post.
        (webhook_error(400, "invalid_payload"), False, None),
        (webhook_error(400, "invalid_blocks"), False, None),
        # Slack: the workspace or the app forbids posting.
        (webhook_error(403, "action_prohibited"), False, None),
        # Slack: the channel or the hook is gone.
        (webhook_error(404, "channel_not_found"), False, None),
        (webhook_error(404, "no_service"), False, None),
        (webhook_error(410, "channel_is_archived"), False, None),
        # Slack: over 1 message per second; Retry-After in seconds.
        (webhook_error(429, "rate_limited", retry_after=1), True, 1.0),
        (webhook_error(429, "rate_limited"), True, None),
        # Slack's side failed: try again.
        (webhook_error(500, "internal_error"), True, None),
        (webhook_error(502, "<html>bad gateway</html>"), True, None),
        (webhook_error(503, "service_unavailable"), True, None),
        # The connection closed without an answer.
        (DROP, True, None),
    ],
)
def test_webhook_answers_map_to_recoverable_or_permanent(
    webhook: SlackWebhookNotifier,
    slack_webhook: SlackWebhookServer,
    answer: Answer,
    recoverable: bool,
    retry_after: float | None,
) -> None:
    slack_webhook.script(answer)

    error = failure(webhook, [notification(make_alert())])

    assert error.recoverable is recoverable
    assert error.retry_after == retry_after
    assert str(error).startswith("slack webhook finops-slack: ")
    if not answer.drop:
        assert f"HTTP {answer.status}" in str(error)
    assert slack_webhook.delivered == []


def test_webhook_hook_removed_is_permanent(
    webhook: SlackWebhookNotifier, slack_webhook: SlackWebhookServer
) -> None:
    slack_webhook.remove_hook(slack_webhook.path)

    error = failure(webhook, [notification(make_alert())])

    assert (error.recoverable, str(error)) == (
        False,
        "slack webhook finops-slack: HTTP 404 no_service",
    )


def test_webhook_connection_refused_is_recoverable(store: SecretStore) -> None:
    write_secret(store, "hook", f"http://127.0.0.1:{free_port()}/services/T0/B0/x")
    notifier = SlackWebhookNotifier("down", store.source("hook"), timeout=2)

    error = failure(notifier, [notification(make_alert())])

    assert error.recoverable
    assert "refused" in str(error).lower()


def test_webhook_timeout_is_recoverable(
    slack_webhook: SlackWebhookServer, store: SecretStore
) -> None:
    write_secret(store, "hook", slack_webhook.url)
    notifier = SlackWebhookNotifier("slow", store.source("hook"), timeout=0.3)
    slack_webhook.script(Answer(delay=0.8))

    error = failure(notifier, [notification(make_alert())])

    assert (error.recoverable, str(error)) == (True, "slack webhook slow: timed out")


def test_webhook_missing_secret_is_recoverable_and_named(store: SecretStore) -> None:
    notifier = SlackWebhookNotifier("nosecret", store.source("slack-webhook-url"))

    error = failure(notifier, [notification(make_alert())])

    assert error.recoverable
    assert "'slack-webhook-url' is missing" in str(error)


def test_webhook_resolve_is_a_new_green_message(
    webhook: SlackWebhookNotifier, slack_webhook: SlackWebhookServer
) -> None:
    firing = notification(make_alert())
    deliver(webhook, [firing])

    assert deliver(webhook, [resolved(firing, None)]) == [None]

    _, second = slack_webhook.messages
    assert second["text"].startswith("[RESOLVED] HighGPUCost")
    assert second["attachments"][0]["color"] == "#2EB67D"
    assert "RESOLVED: HighGPUCost" in second["blocks"][0]["text"]["text"]
    assert "after 1h 20m" in all_text(second)


def test_warning_fires_orange() -> None:
    n = notification(make_alert(labels={"severity": "warning"}))
    notifier = offline()

    (body,) = notifier.render([n])

    assert body["attachments"][0]["color"] == "#F29D38"


# -- Web API: bot token ------------------------------------------------------------------


def test_bot_post_returns_channel_and_ts(bot: SlackBotNotifier, slack_api: SlackApiServer) -> None:
    n = notification(make_alert())

    (ref,) = deliver(bot, [n])

    (message,) = slack_api.messages(DEFAULT_CHANNEL)
    assert ref == {"channel": DEFAULT_CHANNEL_ID, "ts": message.ts}
    (call,) = slack_api.calls("chat.postMessage")
    assert call.headers["Authorization"] == f"Bearer {BOT_TOKEN}"
    assert call.body == bot.render([n])[0]
    assert call.body["channel"] == DEFAULT_CHANNEL


def test_bot_resolve_edits_the_original_and_replies_in_its_thread(
    bot: SlackBotNotifier, slack_api: SlackApiServer
) -> None:
    firing = notification(make_alert())
    (ref,) = deliver(bot, [firing])
    assert ref is not None
    resolve = resolved(firing, ref)

    assert deliver(bot, [resolve]) == [ref]

    assert [r.method for r in slack_api.requests] == [
        "chat.postMessage",
        "chat.update",
        "chat.postMessage",
    ]
    (message,) = slack_api.messages(DEFAULT_CHANNEL)  # no new top-level message
    assert message.edits == 1
    assert "RESOLVED: HighGPUCost" in message.blocks[0]["text"]["text"]
    assert message.attachments[0]["color"] == "#2EB67D"
    assert message.text.startswith("[RESOLVED]")
    (reply,) = slack_api.replies(DEFAULT_CHANNEL, ref["ts"])
    assert reply.thread_ts == ref["ts"]
    assert "*Resolved*" in reply.all_text()
    update, reply_body = bot.render([resolve])
    assert update == slack_api.calls("chat.update")[0].body
    assert reply_body == slack_api.calls("chat.postMessage")[1].body


def test_bot_resolve_of_a_deleted_message_posts_a_new_one(
    bot: SlackBotNotifier, slack_api: SlackApiServer
) -> None:
    gone = {"channel": DEFAULT_CHANNEL_ID, "ts": "1600000000.000001"}

    (ref,) = deliver(bot, [resolved(notification(make_alert()), gone)])

    update = slack_api.calls("chat.update")[0]
    assert update.answer == {"ok": False, "error": "message_not_found"}
    (message,) = slack_api.messages(DEFAULT_CHANNEL)
    assert ref == {"channel": DEFAULT_CHANNEL_ID, "ts": message.ts}
    assert message.thread_ts is None
    assert message.text.startswith("[RESOLVED]")


def test_bot_resolve_without_ref_posts_a_new_message(
    bot: SlackBotNotifier, slack_api: SlackApiServer
) -> None:
    (ref,) = deliver(bot, [resolved(notification(make_alert()), None)])

    assert slack_api.calls("chat.update") == []
    (message,) = slack_api.messages(DEFAULT_CHANNEL)
    assert ref == {"channel": DEFAULT_CHANNEL_ID, "ts": message.ts}
    assert message.text.startswith("[RESOLVED]")


def test_bot_resolve_retried_after_a_failed_reply_edits_again_and_replies_once(
    bot: SlackBotNotifier, slack_api: SlackApiServer
) -> None:
    (ref,) = deliver(bot, [notification(make_alert())])
    assert ref is not None
    resolve = resolved(notification(make_alert()), ref)
    slack_api.script(api_error("internal_error", status=500), method="chat.postMessage")

    assert failure(bot, [resolve]).recoverable
    assert deliver(bot, [resolve]) == [ref]

    message = slack_api.message(DEFAULT_CHANNEL, ref["ts"])
    assert message is not None
    assert message.edits == 2
    assert len(message.replies) == 1


def test_bot_digest_refs_point_at_the_digest_and_a_resolve_replies_there(
    bot: SlackBotNotifier, slack_api: SlackApiServer
) -> None:
    batch = [notification(make_alert(f"Alert{i}")) for i in range(3)]

    refs = deliver(bot, batch)

    (digest,) = slack_api.messages(DEFAULT_CHANNEL)
    expected = {"channel": DEFAULT_CHANNEL_ID, "ts": digest.ts, "kind": "digest"}
    assert refs == [expected] * 3
    resolve = resolved(batch[1], refs[1])
    assert deliver(bot, [resolve]) == [expected]
    after = slack_api.message(DEFAULT_CHANNEL, digest.ts)
    assert after is not None
    assert after.edits == 0  # the other alerts of the digest stay listed
    (reply,) = after.replies
    assert reply.broadcast
    assert "Alert1" in reply.all_text()


def test_bot_resolve_replying_to_a_deleted_digest_posts_a_new_message(
    bot: SlackBotNotifier, slack_api: SlackApiServer
) -> None:
    gone = {"channel": DEFAULT_CHANNEL_ID, "ts": "1600000000.000001", "kind": "digest"}

    (ref,) = deliver(bot, [resolved(notification(make_alert()), gone)])

    first, second = slack_api.calls("chat.postMessage")
    assert first.answer == {"ok": False, "error": "thread_not_found"}
    assert "thread_ts" not in second.body
    (message,) = slack_api.messages(DEFAULT_CHANNEL)
    assert ref == {"channel": DEFAULT_CHANNEL_ID, "ts": message.ts}
    assert message.text.startswith("[RESOLVED]")


def test_bot_message_refuses_unknown_channel(slack_api: SlackApiServer, store: SecretStore) -> None:
    write_secret(store, "token", BOT_TOKEN)
    notifier = SlackBotNotifier(
        "nochan", store.source("token"), "#nowhere", api_url=slack_api.api_url
    )

    error = failure(notifier, [notification(make_alert())])

    assert (error.recoverable, str(error)) == (
        False,
        "slack bot nochan: chat.postMessage: HTTP 200 channel_not_found",
    )


@pytest.mark.parametrize(
    ("member", "archived", "code"),
    [
        (False, False, "not_in_channel"),  # the bot was never invited
        (True, True, "is_archived"),
    ],
)
def test_bot_channel_state_errors_are_permanent(
    bot: SlackBotNotifier, slack_api: SlackApiServer, member: bool, archived: bool, code: str
) -> None:
    slack_api.set_channel(DEFAULT_CHANNEL, member=member, archived=archived)

    error = failure(bot, [notification(make_alert())])

    assert not error.recoverable
    assert str(error).endswith(code)


def test_bot_wrong_token_is_permanent(bot: SlackBotNotifier, slack_api: SlackApiServer) -> None:
    slack_api.tokens = {"xoxb-some-other-token"}

    error = failure(bot, [notification(make_alert())])

    assert not error.recoverable
    assert str(error).endswith("invalid_auth")


@pytest.mark.parametrize(
    ("answer", "recoverable", "retry_after"),
    [
        # Slack Web API: HTTP 200 {"ok": false} with a permanent error.
        (api_error("channel_not_found"), False, None),
        (api_error("not_in_channel"), False, None),
        (api_error("invalid_auth"), False, None),
        (api_error("account_inactive"), False, None),
        (api_error("is_archived"), False, None),
        (api_error("msg_too_long"), False, None),
        (api_error("invalid_blocks"), False, None),
        (api_error("no_text"), False, None),
        # Slack Web API: errors documented as "try again".
        (api_error("internal_error"), True, None),
        (api_error("fatal_error"), True, None),
        (api_error("service_unavailable"), True, None),
        (api_error("request_timeout"), True, None),
        # Rate limits: HTTP 429 with Retry-After, or the code alone.
        (ratelimited(1), True, 1.0),
        (api_error("ratelimited"), True, None),
        # HTTP 5xx, with or without a JSON body.
        (Answer(500, {"ok": False, "error": "internal_error"}), True, None),
        (Answer(503, "<html>upstream down</html>"), True, None),
        # The connection closed without an answer.
        (DROP, True, None),
    ],
)
def test_web_api_answers_map_to_recoverable_or_permanent(
    bot: SlackBotNotifier,
    slack_api: SlackApiServer,
    answer: Answer,
    recoverable: bool,
    retry_after: float | None,
) -> None:
    slack_api.script(answer)

    error = failure(bot, [notification(make_alert())])

    assert error.recoverable is recoverable
    assert error.retry_after == retry_after
    assert str(error).startswith("slack bot finops-bot: chat.postMessage")
    if isinstance(answer.body, Mapping):
        assert str(error).endswith(str(answer.body["error"]))
    assert slack_api.messages(DEFAULT_CHANNEL) == []


def test_web_api_connection_refused_is_recoverable(store: SecretStore) -> None:
    write_secret(store, "token", BOT_TOKEN)
    notifier = SlackBotNotifier(
        "down", store.source("token"), "#x", api_url=f"http://127.0.0.1:{free_port()}/api/"
    )

    assert failure(notifier, [notification(make_alert())]).recoverable


# -- content: escaping, truncation, context, links ---------------------------------------


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


# -- digests -----------------------------------------------------------------------------


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


# -- secrets -----------------------------------------------------------------------------


def test_webhook_url_rotation_is_used_from_the_next_send(
    webhook: SlackWebhookNotifier, slack_webhook: SlackWebhookServer, store: SecretStore
) -> None:
    deliver(webhook, [notification(make_alert())])
    with SlackWebhookServer(path="/services/T000/B000/ROTATED") as rotated:
        write_secret(store, "slack-webhook-url", rotated.url)

        deliver(webhook, [notification(make_alert())])

        assert len(rotated.delivered) == 1
    assert len(slack_webhook.delivered) == 1


def test_bot_token_rotation_is_used_from_the_next_send(
    bot: SlackBotNotifier, slack_api: SlackApiServer, store: SecretStore
) -> None:
    deliver(bot, [notification(make_alert())])
    slack_api.tokens = {"xoxb-rotated-token"}  # Slack revoked the old token
    assert failure(bot, [notification(make_alert())]).recoverable is False

    write_secret(store, "slack-bot-token", "xoxb-rotated-token")
    deliver(bot, [notification(make_alert())])

    last = slack_api.calls("chat.postMessage")[-1]
    assert last.headers["Authorization"] == "Bearer xoxb-rotated-token"
    assert len(slack_api.messages(DEFAULT_CHANNEL)) == 2


def test_render_and_repr_hold_no_secret(
    webhook: SlackWebhookNotifier, bot: SlackBotNotifier, slack_webhook: SlackWebhookServer
) -> None:
    n = notification(make_alert())
    rendered = json.dumps([webhook.render([n]), bot.render([n])])

    for secret in (slack_webhook.url, slack_webhook.path, BOT_TOKEN):
        assert secret not in rendered
        assert secret not in repr(webhook) + repr(bot)


SECRET_HOOK_PATH = "/services/T0SECRET/B0SECRET/s3cr3tW3bh00kT0k3n"
SECRET_TOKEN = "xoxb-1111-2222-s3cr3tB0tT0k3n"


def assert_leaks_no_secret(
    error: NotifyError, caplog: pytest.LogCaptureFixture, secrets: Sequence[str]
) -> None:
    """Alertmanager's AssertNotifyLeaksNoSecret: not in the error, its chain, or any log."""
    texts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    for record in caplog.records:
        texts.append(record.getMessage())
        texts.append(repr(record.args))
        if record.exc_info:
            texts.append("".join(traceback.format_exception(*record.exc_info)))
    texts.append(caplog.text)
    for secret in secrets:
        for text in texts:
            assert secret not in text


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    for name in ("slack_sdk", "receiver", "urllib3", "http.client"):
        caplog.set_level(logging.DEBUG, logger=name)
    yield caplog


@pytest.mark.parametrize(
    "scenario",
    [
        "400",
        "403",
        "404",
        "410",
        "429",
        "500",
        "echo",
        "drop",
        "timeout",
        "refused",
        "not-http",
        "bad-port",
    ],
)
def test_webhook_leaks_no_secret(
    scenario: str, store: SecretStore, debug_logs: pytest.LogCaptureFixture
) -> None:
    with SlackWebhookServer(path=SECRET_HOOK_PATH) as server:
        url = server.url
        answers = {
            "400": webhook_error(400, "invalid_payload"),
            "403": webhook_error(403, "action_prohibited"),
            "404": webhook_error(404, "channel_not_found"),
            "410": webhook_error(410, "channel_is_archived"),
            "429": webhook_error(429, "rate_limited", retry_after=1),
            "500": webhook_error(500, "internal_error"),
            # A misbehaving proxy that echoes the request URL back in its error page.
            "echo": webhook_error(502, f"bad gateway for {url} ({SECRET_HOOK_PATH})"),
            "drop": DROP,
            "timeout": Answer(delay=0.8),
        }
        if scenario in answers:
            server.script(answers[scenario])
        elif scenario == "refused":
            url = f"http://127.0.0.1:{free_port()}{SECRET_HOOK_PATH}"
        elif scenario == "not-http":
            url = f"ftp://hooks.example{SECRET_HOOK_PATH}"
        else:
            url = f"http://127.0.0.1:port{SECRET_HOOK_PATH}"
        write_secret(store, "slack-webhook-url", url)
        notifier = SlackWebhookNotifier("leaky", store.source("slack-webhook-url"), timeout=0.3)

        error = failure(notifier, [notification(make_alert())])

    assert_leaks_no_secret(error, debug_logs, [url, SECRET_HOOK_PATH, "s3cr3tW3bh00kT0k3n"])


@pytest.mark.parametrize(
    "scenario",
    [
        "invalid_auth",
        "channel_not_found",
        "ratelimited",
        "500",
        "echo",
        "drop",
        "timeout",
        "refused",
        "update-fallback",
    ],
)
def test_bot_leaks_no_secret(
    scenario: str, store: SecretStore, debug_logs: pytest.LogCaptureFixture
) -> None:
    with SlackApiServer(tokens=[SECRET_TOKEN]) as server:
        api_url = server.api_url
        channel = DEFAULT_CHANNEL
        batch = [notification(make_alert())]
        answers = {
            "ratelimited": ratelimited(1),
            "500": api_error("internal_error", status=500),
            # A server that puts the token it received into its error.
            "echo": api_error(f"invalid token {SECRET_TOKEN}", status=401),
            "drop": DROP,
            "timeout": Answer(delay=0.8),
        }
        if scenario in answers:
            server.script(answers[scenario])
        elif scenario == "invalid_auth":
            server.tokens = {"xoxb-another"}
        elif scenario == "channel_not_found":
            channel = "#nowhere"
        elif scenario == "refused":
            api_url = f"http://127.0.0.1:{free_port()}/api/"
        else:
            # chat.update fails (message gone), then the new message fails too.
            gone = {"channel": DEFAULT_CHANNEL_ID, "ts": "1.000001"}
            batch = [resolved(batch[0], gone)]
            server.script(api_error("internal_error", status=500), method="chat.postMessage")
        write_secret(store, "slack-bot-token", SECRET_TOKEN)
        notifier = SlackBotNotifier(
            "leaky", store.source("slack-bot-token"), channel, api_url=api_url, timeout=0.3
        )

        error = failure(notifier, batch)

    assert_leaks_no_secret(error, debug_logs, [SECRET_TOKEN, "s3cr3tB0tT0k3n"])


# -- the fakes themselves ----------------------------------------------------------------


def post(url: str, body: bytes, headers: Mapping[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method="POST", headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


@pytest.mark.parametrize(
    ("body", "status", "answer"),
    [
        (b'{"text": "hello"}', 200, "ok"),
        (b"not json", 400, "invalid_payload"),
        (b"[1, 2]", 400, "invalid_payload"),
        (b'{"username": "x"}', 400, "no_text"),
        (json.dumps({"blocks": [section("x")] * 51}).encode(), 400, "invalid_blocks"),
        (json.dumps({"blocks": [section("x" * 3001)]}).encode(), 400, "invalid_blocks"),
        (
            json.dumps({"attachments": [{"blocks": [section("x")] * 51}]}).encode(),
            400,
            "invalid_blocks",
        ),
        (
            json.dumps(
                {"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]}
            ).encode(),
            400,
            "invalid_blocks",
        ),
    ],
)
def test_fake_webhook_validates_like_slack(
    slack_webhook: SlackWebhookServer, body: bytes, status: int, answer: str
) -> None:
    assert post(slack_webhook.url, body, {"Content-Type": "application/json"}) == (status, answer)


def test_fake_web_api_checks_auth_channels_and_limits(slack_api: SlackApiServer) -> None:
    url = slack_api.api_url + "chat.postMessage"
    good = {"Authorization": f"Bearer {BOT_TOKEN}", "Content-Type": "application/json"}

    def call(body: Mapping[str, Any], headers: Mapping[str, str] = good) -> Any:
        return json.loads(post(url, json.dumps(body).encode(), headers)[1])

    assert call({"channel": "#gpu-costs", "text": "x"}, {})["error"] == "not_authed"
    bad = {**good, "Authorization": "Bearer xoxb-wrong"}
    assert call({"channel": "#gpu-costs", "text": "x"}, bad)["error"] == "invalid_auth"
    assert call({"channel": "#nope", "text": "x"})["error"] == "channel_not_found"
    assert call({"channel": "#gpu-costs", "blocks": [section("x")] * 51})["error"] == (
        "invalid_blocks"
    )
    first = call({"channel": "#gpu-costs", "text": "x"})
    second = call({"channel": DEFAULT_CHANNEL_ID, "text": "y"})
    assert (first["ok"], first["channel"]) == (True, DEFAULT_CHANNEL_ID)
    assert float(second["ts"]) > float(first["ts"])
    form = urllib.parse.urlencode({"channel": "#gpu-costs", "text": "z", "token": BOT_TOKEN})
    answer = post(url, form.encode(), {"Content-Type": "application/x-www-form-urlencoded"})
    assert json.loads(answer[1])["ok"] is True
    update = slack_api.api_url + "chat.update"
    body = {"channel": DEFAULT_CHANNEL_ID, "ts": "1.000001", "text": "u"}
    assert json.loads(post(update, json.dumps(body).encode(), good)[1])["error"] == (
        "message_not_found"
    )
    assert [m.text for m in slack_api.messages(DEFAULT_CHANNEL)] == ["x", "y", "z"]


def test_fake_random_failures_still_let_everything_through_with_retries(
    webhook: SlackWebhookNotifier, slack_webhook: SlackWebhookServer
) -> None:
    slack_webhook.fail_randomly(0.3, seed=7, answers=[webhook_error(500, "internal_error"), DROP])
    failures = 0
    for i in range(30):
        while True:
            try:
                deliver(webhook, [notification(make_alert(f"A{i}"))])
                break
            except NotifyError as error:
                assert error.recoverable
                failures += 1

    assert len(slack_webhook.delivered) == 30
    assert 3 <= failures <= 30


def test_fake_rate_limit_answers_429_per_hook_and_per_channel(
    webhook: SlackWebhookNotifier,
    bot: SlackBotNotifier,
    slack_webhook: SlackWebhookServer,
    slack_api: SlackApiServer,
) -> None:
    slack_webhook.limit_rate(1.0)
    slack_api.limit_rate(1.0)
    other = slack_api.add_channel("#other")
    n = notification(make_alert())

    deliver(webhook, [n])
    deliver(bot, [n])
    webhook_error_ = failure(webhook, [n])
    bot_error = failure(bot, [n])
    api_url = slack_api.api_url + "chat.postMessage"
    body = json.dumps({"channel": other, "text": "another channel has its own limit"})
    headers = {"Authorization": f"Bearer {BOT_TOKEN}", "Content-Type": "application/json"}

    assert (webhook_error_.recoverable, webhook_error_.retry_after) == (True, 1.0)
    assert (bot_error.recoverable, bot_error.retry_after) == (True, 1.0)
    assert json.loads(post(api_url, body.encode(), headers)[1])["ok"] is True
    assert len(slack_webhook.delivered) == 1
    assert max_per_window(slack_webhook.delivery_times()) == 1
    assert len(slack_api.post_times(DEFAULT_CHANNEL)) == 1


def test_repeat_notification_says_so() -> None:
    n = Notification(make_alert(), "finops", "expensive", DedupReason.REPEAT)
    notifier = offline()

    assert "still firing: repeat notification" in all_text(notifier.render([n]))


def test_rate_helpers() -> None:
    times = [0.0, 0.4, 0.9, 1.5, 3.0]

    assert max_per_window(times, 1.0) == 3
    assert max_per_window(times, 0.5) == 2
    assert min_interval(times) == pytest.approx(0.4)
    assert min_interval([1.0]) == math.inf


def test_proxy_from_the_environment_honours_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    from receiver.notify.slack.notifier import _proxy_for, _proxy_for_host

    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("https_proxy", "http://proxy.invalid:3128")
    monkeypatch.setenv("no_proxy", "hooks.internal.invalid")
    _proxy_for_host.cache_clear()
    try:
        assert _proxy_for("https://hooks.slack.com/services/T/B/x") == "http://proxy.invalid:3128"
        assert _proxy_for("https://hooks.internal.invalid/services/T/B/x") is None
        assert _proxy_for("http://hooks.slack.com/services/T/B/x") is None  # no http_proxy
    finally:
        _proxy_for_host.cache_clear()
