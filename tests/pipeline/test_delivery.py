"""Delivery to local servers that speak Slack's and PagerDuty's protocols: pairing of
resolves, across a restart too, rate limits and digests, secret rotation."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from receiver.models import Alert, labels_fingerprint
from receiver.notify.pagerduty.notifier import dedup_key
from receiver.samples import webhook
from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.slack import (
    DEFAULT_CHANNEL,
    SlackApiServer,
    SlackWebhookServer,
    min_interval,
    strings,
)
from tests.pipeline.router import (
    T0,
    Router,
    alert,
    resolved,
)
from tests.support import wait_until


def test_pagerduty_trigger_and_resolve_share_the_dedup_key(
    make_router: Callable[..., Router], fake_pagerduty: FakePagerDuty
) -> None:
    router = make_router(fake_pagerduty)
    body = webhook([alert("GPU-A", severity="critical")], starts_at=T0)
    router.post(body)
    wait_until(lambda: len(fake_pagerduty.events) == 1)
    router.post(resolved(body))
    wait_until(lambda: len(fake_pagerduty.events) == 2)
    trigger, resolve = fake_pagerduty.events
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert trigger["dedup_key"] == resolve["dedup_key"]
    labels = body["alerts"][0]["labels"]
    expected = dedup_key(Alert(labels_fingerprint(labels), "firing", labels, {}, starts_at=T0))
    assert trigger["dedup_key"] == expected
    incident = fake_pagerduty.incident(expected)
    assert incident is not None and incident.status == "resolved"


def test_slack_bot_message_is_edited_on_resolve(
    make_router: Callable[..., Router], fake_pagerduty: FakePagerDuty, slack_api: SlackApiServer
) -> None:
    router = make_router(fake_pagerduty)
    body = webhook([alert("GPU-A", severity="critical")], starts_at=T0)
    router.post(body)
    wait_until(lambda: len(slack_api.calls("chat.postMessage")) == 1)
    [original] = slack_api.messages(DEFAULT_CHANNEL)
    router.post(resolved(body))
    wait_until(lambda: len(slack_api.calls("chat.update")) == 1)
    wait_until(lambda: len(slack_api.replies(DEFAULT_CHANNEL, original.ts)) == 1)
    edited = slack_api.message(DEFAULT_CHANNEL, original.ts)
    assert edited is not None and edited.edits == 1
    assert "RESOLVED" in edited.all_text().upper()
    # Only the one top-level message: the resolve did not post a new one.
    assert len(slack_api.messages(DEFAULT_CHANNEL)) == 1


def test_restart_between_firing_and_resolve_still_pairs(
    make_router: Callable[..., Router], fake_pagerduty: FakePagerDuty, slack_api: SlackApiServer
) -> None:
    first = make_router(fake_pagerduty)
    body = webhook([alert("GPU-A", severity="critical")], starts_at=T0)
    first.post(body)
    wait_until(lambda: len(fake_pagerduty.events) == 1 and len(slack_api.messages()) == 1)
    wait_until(first.idle)
    first.server.stop()
    # A new process on the same state file.
    second = make_router(fake_pagerduty)
    second.post(resolved(body))
    wait_until(lambda: len(fake_pagerduty.events) == 2)
    wait_until(lambda: len(slack_api.calls("chat.update")) == 1)
    trigger, resolve = fake_pagerduty.events
    assert trigger["dedup_key"] == resolve["dedup_key"]
    [message] = slack_api.messages()
    assert "RESOLVED" in message.all_text().upper()


def test_storm_to_slack_arrives_as_digests_within_the_rate_limit(
    make_router: Callable[..., Router],
    fake_pagerduty: FakePagerDuty,
    slack_webhook: SlackWebhookServer,
) -> None:
    # The fake answers 429 past 2 messages/s, no burst: every message at least 0.5 s
    # after the one before it (Slack itself allows "short bursts").
    slack_webhook.limit_rate(2.0, burst=1.0)
    router = make_router(fake_pagerduty, slack_rate=2)
    count = 2000
    for start in range(0, count, 100):
        batch = [alert(f"Storm{i:04d}") for i in range(start, start + 100)]
        router.post(webhook(batch, starts_at=T0))
    wait_until(router.idle, timeout=90)
    texts = [" ".join(strings(m)) for m in slack_webhook.messages]
    for i in range(count):
        assert any(f"Storm{i:04d}" in t for t in texts), i
    assert len(texts) < count / 10  # digests, not a flood
    assert all(r.status == 200 for r in slack_webhook.requests)  # never over the limit
    times = slack_webhook.delivery_times()
    assert min_interval(times) >= 0.5
    assert router.metric("alert_router_slack_digests_total", destination="hook") >= 1


def test_a_message_that_arrives_late_does_not_crowd_the_next_one(
    make_router: Callable[..., Router],
    fake_pagerduty: FakePagerDuty,
    slack_webhook: SlackWebhookServer,
) -> None:
    # Every other message takes 0.4 s to reach Slack. Slots alone (one per 0.525 s) would
    # let the next message arrive 0.125 s after a slow one; Slack's limit counts arrivals.
    slack_webhook.limit_rate(2.0, burst=1.0)
    slack_webhook.slow_network(*[0.4, 0.0] * 4)
    router = make_router(fake_pagerduty, slack_rate=2)
    for i in range(8):
        router.post(webhook([alert(f"Late{i}")], starts_at=T0))
        time.sleep(0.05)
    wait_until(router.idle, timeout=30)
    texts = [" ".join(strings(m)) for m in slack_webhook.messages]
    for i in range(8):
        assert sum(f"Late{i}" in t for t in texts) == 1, i
    assert len(texts) >= 2  # the first message is a slow one; then at least one more
    assert all(r.status == 200 for r in slack_webhook.requests)  # never over the limit
    assert min_interval(slack_webhook.delivery_times()) >= 0.5


def test_secret_rotation_is_used_from_the_next_send(
    make_router: Callable[..., Router],
    fake_pagerduty: FakePagerDuty,
    slack_webhook: SlackWebhookServer,
) -> None:
    router = make_router(fake_pagerduty)
    router.post(webhook([alert("GPU-A")], starts_at=T0))
    wait_until(lambda: len(slack_webhook.delivered) == 1)
    new_url = slack_webhook.add_hook("/services/T000/B000/ROTATED")
    slack_webhook.remove_hook(slack_webhook.path)
    secret = router.server.service.settings.secrets_dir / "slack-webhook-url"
    secret.write_text(new_url)
    later = time.time() + 10

    os.utime(secret, (later, later))
    router.post(webhook([alert("GPU-B")], starts_at=T0))
    wait_until(lambda: len(slack_webhook.delivered) == 2)
    assert slack_webhook.delivered[-1].path == "/services/T000/B000/ROTATED"
