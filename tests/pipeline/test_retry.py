"""After a failed send: Retry-After honoured, a permanent error kept as a replayable dead
letter, flaky sinks still getting everything exactly once."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from receiver.samples import webhook
from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.slack import (
    SlackWebhookServer,
    strings,
    webhook_error,
)
from tests.pipeline.router import (
    T0,
    Router,
    alert,
)
from tests.support import wait_until


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
    # The fake records the message as it answers; the router counts it once the answer is
    # back, a moment later.
    wait_until(
        lambda: (
            router.metric(
                "alert_router_notifications_total", destination="hook", outcome="delivered"
            )
            > 0
        ),
        timeout=10,
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
