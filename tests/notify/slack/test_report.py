"""Reports in Slack: the Block Kit message, and posting it with its chart (bot: uploaded
into the report's thread) or its graph link (webhook)."""

from __future__ import annotations

import pytest

from receiver.notify.base import NotifyError
from receiver.notify.slack.bot import ChartNotUploaded, SlackBotNotifier
from receiver.notify.slack.report import CHART_FILENAME, chart_title, report_message
from receiver.notify.slack.webhook import SlackWebhookNotifier
from receiver.reports.render import render_text
from tests.fakes.slack import (
    DEFAULT_CHANNEL,
    DEFAULT_CHANNEL_ID,
    MAX_BLOCKS,
    Answer,
    SlackApiServer,
    SlackWebhookServer,
    api_error,
    strings,
    validate_message,
)
from tests.notify.slack.support import INJECTIONS
from tests.reports.sample import hostile_report, sample_report

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


def test_the_message_passes_slack_limits_and_names_every_section() -> None:
    message = report_message(sample_report())
    body = message.body()
    assert validate_message(body) is None
    assert len(body["blocks"]) <= MAX_BLOCKS
    text = "\n".join(strings(body))
    for title in ("Spend", "Waste", "Budgets", "Changes", "Cost incidents"):
        assert f"*{title}" in text
    assert "$1,476" in text and "time-slicing on gpu-node-2: saves $146.88" in text
    assert "LATE" not in text
    assert "Graph in Prometheus" not in text


def test_a_late_report_says_so() -> None:
    message = report_message(sample_report(late=True))
    text = "\n".join(strings(message.body()))
    assert "(LATE)" in text and "Sent late" in text
    assert "(LATE)" in render_text(sample_report(late=True))


def test_hostile_names_are_escaped_and_cut() -> None:
    body = report_message(hostile_report()).body()
    assert validate_message(body) is None
    text = "\n".join(strings(body))
    for injection in INJECTIONS:
        assert injection not in text


async def test_bot_posts_the_report_and_uploads_the_chart_in_its_thread(
    bot: SlackBotNotifier, slack_api: SlackApiServer
) -> None:
    report = sample_report()
    ref = await bot.post_report(report_message(report), PNG, chart_title=chart_title(report))
    assert ref == {"channel": DEFAULT_CHANNEL_ID, "ts": ref["ts"], "kind": "report"}
    [posted] = slack_api.messages(DEFAULT_CHANNEL)
    assert posted.ts == ref["ts"] and "Cost report daily-costs" in posted.text
    [reserved] = slack_api.calls("files.getUploadURLExternal")
    assert reserved.body["filename"] == CHART_FILENAME
    assert reserved.body["length"] == str(len(PNG))
    [complete] = slack_api.calls("files.completeUploadExternal")
    assert complete.body["channel_id"] == DEFAULT_CHANNEL_ID
    assert complete.body["thread_ts"] == ref["ts"]
    [upload] = slack_api.uploads()
    assert upload.data == PNG and upload.completed
    assert upload.title == chart_title(report)
    [reply] = slack_api.replies(DEFAULT_CHANNEL, ref["ts"])
    assert reply.files == [upload.file_id]
    await bot.aclose()


async def test_a_failed_chart_upload_is_retried_without_posting_twice(
    bot: SlackBotNotifier, slack_api: SlackApiServer
) -> None:
    slack_api.script(Answer(500, "upstream error"), method="upload")
    with pytest.raises(ChartNotUploaded) as caught:
        await bot.post_report(report_message(sample_report()), PNG)
    assert caught.value.recoverable
    assert "HTTP 500" in str(caught.value)
    ref = await bot.post_report(report_message(sample_report()), PNG, posted=caught.value.ref)
    assert len(slack_api.messages(DEFAULT_CHANNEL)) == 1
    assert len(slack_api.replies(DEFAULT_CHANNEL, ref["ts"])) == 1
    await bot.aclose()


@pytest.mark.parametrize(
    ("method", "answer", "recoverable"),
    [
        ("files.getUploadURLExternal", api_error("ratelimited", status=429, retry_after=3), True),
        ("files.getUploadURLExternal", api_error("file_uploads_disabled"), False),
        ("files.completeUploadExternal", api_error("internal_error", status=500), True),
        ("files.completeUploadExternal", api_error("not_in_channel"), False),
    ],
)
async def test_upload_errors_map_like_message_errors(
    bot: SlackBotNotifier,
    slack_api: SlackApiServer,
    method: str,
    answer: Answer,
    recoverable: bool,
) -> None:
    slack_api.script(answer, method=method)
    with pytest.raises(ChartNotUploaded) as caught:
        await bot.post_report(report_message(sample_report()), PNG)
    assert caught.value.recoverable is recoverable
    assert caught.value.ref["channel"] == DEFAULT_CHANNEL_ID
    await bot.aclose()


async def test_a_report_slack_refuses_is_not_posted(
    bot: SlackBotNotifier, slack_api: SlackApiServer
) -> None:
    slack_api.tokens.clear()  # the token was revoked: invalid_auth
    with pytest.raises(NotifyError) as caught:
        await bot.post_report(report_message(sample_report()), PNG)
    assert not isinstance(caught.value, ChartNotUploaded)
    assert not caught.value.recoverable and "invalid_auth" in str(caught.value)
    assert slack_api.uploads() == []
    await bot.aclose()


async def test_webhook_gets_the_text_and_a_graph_link(
    webhook: SlackWebhookNotifier, slack_webhook: SlackWebhookServer
) -> None:
    ref = await webhook.post_report(report_message(sample_report(), graph_link=True))
    assert ref == {"kind": "report"}
    [body] = slack_webhook.messages
    text = "\n".join(strings(body))
    assert "Graph in Prometheus" in text and "prometheus.example:9090/graph" in text
    await webhook.aclose()


async def test_webhook_report_errors_are_recoverable_or_not(
    webhook: SlackWebhookNotifier, slack_webhook: SlackWebhookServer
) -> None:
    slack_webhook.script(Answer(500, "internal_error"))
    with pytest.raises(NotifyError) as caught:
        await webhook.post_report(report_message(sample_report()))
    assert caught.value.recoverable
    await webhook.aclose()
