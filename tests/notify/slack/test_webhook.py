"""SlackWebhookNotifier against a local server that answers as Slack's incoming webhooks do."""

from __future__ import annotations

import pytest

from receiver.config.secrets import SecretStore
from receiver.notify.slack.webhook import SlackWebhookNotifier
from tests.fakes.slack import (
    DROP,
    Answer,
    SlackWebhookServer,
    webhook_error,
)
from tests.notify.slack.support import (
    SECRET_HOOK_PATH,
    all_text,
    assert_leaks_no_secret,
    deliver,
    failure,
    make_alert,
    notification,
    resolved,
    write_secret,
)
from tests.support import free_port


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


def test_webhook_url_rotation_is_used_from_the_next_send(
    webhook: SlackWebhookNotifier, slack_webhook: SlackWebhookServer, store: SecretStore
) -> None:
    deliver(webhook, [notification(make_alert())])
    with SlackWebhookServer(path="/services/T000/B000/ROTATED") as rotated:
        write_secret(store, "slack-webhook-url", rotated.url)

        deliver(webhook, [notification(make_alert())])

        assert len(rotated.delivered) == 1
    assert len(slack_webhook.delivered) == 1


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
