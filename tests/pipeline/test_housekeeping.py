"""Housekeeping: notifications for a destination removed from the rules become dead letters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from receiver.samples import webhook
from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.slack import (
    SlackWebhookServer,
    strings,
)
from tests.pipeline.router import (
    RULES,
    T0,
    Router,
    alert,
)
from tests.support import wait_until


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
