"""Delivery through the whole pipeline, to local servers that speak Slack's and
PagerDuty's protocols: dedup per destination, pairing of resolves, retries, dead letters,
rate limits and digests."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from receiver.config.settings import Settings
from receiver.models import Alert, labels_fingerprint
from receiver.notify.pagerduty.notifier import dedup_key
from receiver.samples import webhook
from tests.fakes.pagerduty import ROUTING_KEY, FakePagerDuty
from tests.fakes.slack import (
    BOT_TOKEN,
    DEFAULT_CHANNEL,
    SlackApiServer,
    SlackWebhookServer,
    min_interval,
    strings,
    webhook_error,
)
from tests.service import FAST, TOKEN, ServerThread, make_settings, start_service
from tests.support import wait_until

AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = datetime(2026, 11, 29, 2, 39, 35, 178000, tzinfo=UTC)

RULES = """
destinations:
  hook: {slack: {webhook_url: {secret: slack-webhook-url}, max_per_second: %(slack_rate)s}}
  bot: {slack: {token: {secret: slack-bot-token}, channel: "#gpu-costs", max_per_second: 0}}
  pd: {pagerduty: {routing_key: {secret: pagerduty-key}, max_per_minute: 0}}
routes:
  - name: page
    matchers: ['severity="critical"']
    to: [pd, bot]
    continue: true
  - name: everything
    to: [hook]
"""


class Router:
    """alert-router in-process on a loopback port, with real notifiers."""

    def __init__(self, server: ServerThread) -> None:
        self.server = server

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        r = httpx.post(f"{self.server.url}/alerts", json=body, headers=AUTH, timeout=30)
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        return answer

    def metric(self, name: str, **labels: str) -> float:
        value = self.server.service.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def depths(self) -> dict[str, int]:
        result: dict[str, int] = self.server.call(self.server.service.store.depths)
        return result

    def idle(self) -> bool:
        d = self.depths()
        return d["inbox"] == 0 and d["outbox"] == 0


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


def alert(
    name: str, severity: str = "warning", **labels: str
) -> tuple[dict[str, str], dict[str, str]]:
    return (
        {"alertname": name, "severity": severity, "service": "svc", **labels},
        {"summary": f"{name} summary"},
    )


def resolved(body: dict[str, Any]) -> dict[str, Any]:
    end = "2026-11-29T03:00:00.000Z"
    return {
        **body,
        "status": "resolved",
        "alerts": [{**a, "status": "resolved", "endsAt": end} for a in body["alerts"]],
    }


def hook_alertnames(slack_webhook: SlackWebhookServer) -> list[str]:
    """The alertnames named by each message the webhook accepted."""
    names: list[str] = []
    for message in slack_webhook.messages:
        text = " ".join(strings(message))
        names.extend(n for n in ("GPU-A", "GPU-B", "GPU-C") if n in text)
    return names


def test_group_resend_notifies_only_the_new_alert(
    make_router: Callable[..., Router],
    fake_pagerduty: FakePagerDuty,
    slack_webhook: SlackWebhookServer,
) -> None:
    # No ingest window: every re-send goes through the pipeline, the ledger decides.
    router = make_router(fake_pagerduty, dedup_window=0)
    first = webhook([alert("GPU-A"), alert("GPU-B")], starts_at=T0)
    router.post(first)
    wait_until(lambda: len(slack_webhook.delivered) == 2)
    # Alertmanager's next flush: the whole group again, plus a new alert.
    snapshot = webhook([alert("GPU-A"), alert("GPU-B"), alert("GPU-C")], starts_at=T0)
    router.post(snapshot)
    wait_until(lambda: len(slack_webhook.delivered) == 3)
    wait_until(router.idle)
    time.sleep(0.3)
    assert sorted(hook_alertnames(slack_webhook)) == ["GPU-A", "GPU-B", "GPU-C"]
    assert (
        router.metric(
            "alert_router_dedup_decisions_total", destination="hook", reason="already_notified"
        )
        == 2
    )


def test_ha_pair_copies_notify_once(
    make_router: Callable[..., Router],
    fake_pagerduty: FakePagerDuty,
    slack_webhook: SlackWebhookServer,
) -> None:
    router = make_router(fake_pagerduty)
    body = webhook([alert("GPU-A", severity="critical")], starts_at=T0)
    answers = [router.post(body), router.post(body)]
    assert [a["duplicates"] for a in answers] == [0, 1]
    wait_until(lambda: len(fake_pagerduty.events) == 1 and len(slack_webhook.delivered) == 1)
    wait_until(router.idle)
    time.sleep(0.3)
    assert len(fake_pagerduty.events) == 1
    assert len(slack_webhook.delivered) == 1


def test_ha_copy_after_the_window_is_caught_by_the_ledger(
    make_router: Callable[..., Router],
    fake_pagerduty: FakePagerDuty,
    slack_webhook: SlackWebhookServer,
) -> None:
    router = make_router(fake_pagerduty, dedup_window=0)
    body = webhook([alert("GPU-A", severity="critical")], starts_at=T0)
    router.post(body)
    router.post(body)
    wait_until(lambda: len(fake_pagerduty.events) >= 1)
    wait_until(router.idle)
    time.sleep(0.3)
    assert len(fake_pagerduty.events) == 1
    assert len(slack_webhook.delivered) == 1


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


def test_retry_after_is_honoured(
    make_router: Callable[..., Router],
    fake_pagerduty: FakePagerDuty,
    slack_webhook: SlackWebhookServer,
) -> None:
    slack_webhook.script(webhook_error(429, "rate_limited", retry_after=1))
    router = make_router(fake_pagerduty)
    router.post(webhook([alert("GPU-A")], starts_at=T0))
    wait_until(lambda: len(slack_webhook.delivered) == 1, timeout=10)
    first, second = slack_webhook.requests[:2]
    assert second.at - first.at >= 1.0  # no request before Retry-After
    assert (
        router.metric("alert_router_notifications_total", destination="hook", outcome="retried")
        == 1
    )
    assert (
        router.metric("alert_router_notifications_total", destination="hook", outcome="delivered")
        == 1
    )


def test_permanent_error_is_a_dead_letter_and_replayable(
    make_router: Callable[..., Router],
    fake_pagerduty: FakePagerDuty,
    slack_webhook: SlackWebhookServer,
    tmp_path: Path,
) -> None:
    slack_webhook.script(webhook_error(404, "channel_not_found"))
    router = make_router(fake_pagerduty)
    router.post(webhook([alert("GPU-A")], starts_at=T0))
    wait_until(lambda: router.depths()["dead_letters"] == 1)
    assert (
        router.metric("alert_router_notifications_total", destination="hook", outcome="dead_letter")
        == 1
    )
    assert len(slack_webhook.requests) == 1  # a 4xx is not retried
    env = {"ALERT_ROUTER_STATE": router.server.service.settings.state, "PATH": "/usr/bin:/bin"}
    listing = subprocess.run(
        [sys.executable, "-m", "receiver", "dead-letters", "list"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "hook\tGPU-A\tfiring" in listing.stdout
    assert "channel_not_found" in listing.stdout
    assert slack_webhook.url not in listing.stdout
    replay = subprocess.run(
        [sys.executable, "-m", "receiver", "dead-letters", "retry", "--all"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert replay.stdout.strip() == "1 dead letter(s) queued for delivery again"
    # The running router picks the replayed notification up and delivers it.
    wait_until(lambda: len(slack_webhook.delivered) == 1, timeout=10)


def test_failing_sinks_still_get_everything(
    make_router: Callable[..., Router],
    flaky_pagerduty: FakePagerDuty,
    slack_webhook: SlackWebhookServer,
) -> None:
    slack_webhook.fail_randomly(0.3, seed=7)
    router = make_router(flaky_pagerduty)
    names = [f"Storm{i:03d}" for i in range(40)]
    for name in names:
        router.post(webhook([alert(name, severity="critical")], starts_at=T0))
    wait_until(router.idle, timeout=60)
    triggered = Counter(
        found.group(0)
        for e in flaky_pagerduty.events
        if (found := re.search(r"Storm\d{3}", e["payload"]["summary"]))
    )
    assert sorted(triggered) == names
    assert set(triggered.values()) == {1}  # each once, despite the failures
    texts = [" ".join(strings(m)) for m in slack_webhook.messages]
    for name in names:
        assert sum(name in t for t in texts) == 1, name
    assert router.metric("alert_router_delivery_retries_total", destination="hook") > 0
    assert router.metric("alert_router_delivery_retries_total", destination="pd") > 0


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


def test_notifications_for_a_removed_destination_become_dead_letters(
    make_router: Callable[..., Router],
    fake_pagerduty: FakePagerDuty,
    slack_webhook: SlackWebhookServer,
) -> None:
    fake_pagerduty.fail(503, times=1000)  # PagerDuty is down: the page stays queued
    router = make_router(fake_pagerduty)
    service = router.server.service
    assert service.pipeline is not None
    service.pipeline.tuning = replace(service.pipeline.tuning, orphan_grace=1.0)
    router.post(webhook([alert("PagedThenRemoved", severity="critical")], starts_at=T0))
    wait_until(lambda: router.metric("alert_router_delivery_retries_total", destination="pd") > 0)
    # The destination leaves the rules: its page waits out the grace, then is kept as a
    # dead letter (not lost, not stuck in the queue forever).
    config = service.settings.config
    without_pd = "".join(line for line in RULES.splitlines(True) if "pagerduty" not in line)
    config.write_text(without_pd.replace("to: [pd, bot]", "to: [bot]") % {"slack_rate": 0})
    service.holder.request_reload()
    wait_until(lambda: "pd" not in service.holder.rules.destinations, timeout=10)
    wait_until(lambda: router.depths()["dead_letters"] == 1, timeout=15)
    [dead] = router.server.call(service.store.dead_letters)
    assert (dead.destination, dead.alertname) == ("pd", "PagedThenRemoved")
    assert dead.error == "destination 'pd' is no longer in the rules"
    assert router.depths()["outbox"] == 0
    assert (
        router.metric("alert_router_notifications_total", destination="pd", outcome="dead_letter")
        == 1
    )
    # The destinations still in the rules got their messages.
    assert any("PagedThenRemoved" in " ".join(strings(m)) for m in slack_webhook.messages)


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
    import os

    os.utime(secret, (later, later))
    router.post(webhook([alert("GPU-B")], starts_at=T0))
    wait_until(lambda: len(slack_webhook.delivered) == 2)
    assert slack_webhook.delivered[-1].path == "/services/T000/B000/ROTATED"


def test_repeat_after_repeat_interval(
    make_router: Callable[..., Router],
    fake_pagerduty: FakePagerDuty,
    slack_webhook: SlackWebhookServer,
    tmp_path: Path,
) -> None:
    router = make_router(fake_pagerduty, dedup_window=0)
    rules = (
        (tmp_path / "routes.yaml")
        .read_text()
        .replace("    to: [hook]", "    to: [hook]\n    repeat_interval: 1s")
    )
    (tmp_path / "routes.yaml").write_text(rules)
    wait_until(lambda: router.server.service.holder.rules.routes[1].repeat_interval == 1.0)
    body = webhook([alert("GPU-A")], starts_at=T0 - timedelta(hours=1))
    router.post(body)
    wait_until(lambda: len(slack_webhook.delivered) == 1)
    router.post(body)  # within repeat_interval: suppressed
    wait_until(router.idle)
    time.sleep(1.2)
    router.post(body)  # after it: notified again
    wait_until(lambda: len(slack_webhook.delivered) == 2)
    assert (
        router.metric(
            "alert_router_dedup_decisions_total",
            destination="hook",
            reason="repeat_interval_elapsed",
        )
        == 1
    )
    print(json.dumps(router.depths()))
