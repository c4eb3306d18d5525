"""Routing and the dedup decisions per destination, through the whole pipeline: a group
re-sent, HA copies, the repeat interval."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from receiver.samples import webhook
from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.slack import (
    SlackWebhookServer,
)
from tests.pipeline.router import (
    T0,
    Router,
    alert,
    hook_alertnames,
)
from tests.support import wait_until


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
