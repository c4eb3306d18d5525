"""SlackBotNotifier against a local server that answers as Slack's Web API does."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from receiver.config.secrets import SecretStore
from receiver.notify.slack.bot import SlackBotNotifier
from tests.fakes.slack import (
    BOT_TOKEN,
    DEFAULT_CHANNEL,
    DEFAULT_CHANNEL_ID,
    DROP,
    WORKSPACE_URL,
    Answer,
    SlackApiServer,
    api_error,
    ratelimited,
)
from tests.notify.slack.support import (
    SECRET_TOKEN,
    assert_leaks_no_secret,
    deliver,
    failure,
    make_alert,
    notification,
    resolved,
    write_secret,
)
from tests.support import free_port


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


def test_bot_permalink_is_built_from_the_workspace_url_asked_once(
    bot: SlackBotNotifier, slack_api: SlackApiServer
) -> None:
    async def run() -> list[str | None]:
        try:
            [ref] = await bot.notify([notification(make_alert())])
            assert ref is not None
            second = {"channel": ref["channel"], "ts": "1700000000.000200"}
            return [await bot.permalink(ref), await bot.permalink(second)]
        finally:
            await bot.aclose()

    first, second = asyncio.run(run())
    (message,) = slack_api.messages(DEFAULT_CHANNEL)
    # Slack's own form: the workspace URL, archives, the channel id, p + ts without its dot.
    assert first == (f"{WORKSPACE_URL}archives/{DEFAULT_CHANNEL_ID}/p{message.ts.replace('.', '')}")
    assert second == f"{WORKSPACE_URL}archives/{DEFAULT_CHANNEL_ID}/p1700000000000200"
    assert len(slack_api.calls("auth.test")) == 1


def test_bot_permalink_is_none_when_slack_cannot_say(
    bot: SlackBotNotifier, slack_api: SlackApiServer
) -> None:
    slack_api.script(api_error("invalid_auth"), method="auth.test")

    async def run() -> str | None:
        try:
            return await bot.permalink({"channel": DEFAULT_CHANNEL_ID, "ts": "1.000100"})
        finally:
            await bot.aclose()

    assert asyncio.run(run()) is None
    assert asyncio.run(bot.permalink({"channel": DEFAULT_CHANNEL_ID})) is None
