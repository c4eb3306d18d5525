"""What `serve` records of each alert, read back as timelines, on both stores: every dedup
reason, a notification retried and then delivered, a money-routed escalation; and
`alert-router explain` printing the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from receiver.events import EventKind, Timeline
from receiver.history.timeline import describe
from receiver.samples import webhook
from tests.fakes.pagerduty import ROUTING_KEY, FakePagerDuty
from tests.fakes.prometheus import Exporter, PrometheusServer
from tests.fakes.redis import RedisServer
from tests.fakes.slack import (
    DEFAULT_CHANNEL,
    DEFAULT_CHANNEL_ID,
    WORKSPACE_URL,
    SlackApiServer,
    SlackWebhookServer,
    webhook_error,
)
from tests.pipeline.router import Router, alert
from tests.service import FAST, TOKEN, ServerThread, make_settings, start_service
from tests.support import wait_until

AUTH = {"Authorization": f"Bearer {TOKEN}"}
RULES = """
prometheus: {url: %(prometheus)s}
destinations:
  hook: {slack: {webhook_url: {secret: slack-webhook-url}, max_per_second: 0}}
  quiet: {slack: {webhook_url: {secret: slack-webhook-url}, max_per_second: 0}}
  pd: {pagerduty: {routing_key: {secret: pagerduty-key}, max_per_minute: 0}}
context:
  cost_per_hour:
    query: sum by (service) (service_cost_per_hour)
    unit: usd_per_hour
    title: Service cost
routes:
  - name: expensive
    matchers: ['alertname="HighGPUCost"']
    when: {cost_per_hour: "> 100"}
    to: [pd]
    continue: true
  - name: hush
    matchers: ['alertname="Quiet"']
    to: [quiet]
    send_resolved: false
  - name: everything
    to: [hook]
    repeat_interval: 2s
"""


@pytest.fixture(params=["sqlite", "redis"])
def router(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    slack_webhook: SlackWebhookServer,
    fake_pagerduty: FakePagerDuty,
    prometheus: PrometheusServer,
    exporter: Exporter,
) -> Iterator[ServerThread]:
    config = tmp_path / "routes.yaml"
    config.write_text(RULES % {"prometheus": prometheus.url})
    overrides: dict[str, Any] = {"pagerduty_events_url": fake_pagerduty.url, "dedup_window": 0.5}
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        overrides["state"] = server.url
    settings = make_settings(tmp_path, config, **overrides)
    settings = settings.model_copy(update={"prometheus_url": prometheus.url})
    (settings.secrets_dir / "slack-webhook-url").write_text(slack_webhook.url)
    (settings.secrets_dir / "pagerduty-key").write_text(ROUTING_KEY)
    exporter.set("service_cost_per_hour", {"service": "trainer"}, 130.0)
    exporter.set("service_cost_per_hour", {"service": "search"}, 12.0)
    prometheus.sync()
    thread, _ = start_service(settings, dry_run=False, tuning=FAST)
    try:
        yield thread
    finally:
        thread.stop()
        exporter.remove("service_cost_per_hour", {"service": "trainer"})
        exporter.remove("service_cost_per_hour", {"service": "search"})


def _post(router: ServerThread, body: dict[str, Any]) -> None:
    answer = httpx.post(
        f"{router.url}/alerts",
        json=body,
        headers={**AUTH, "User-Agent": "Alertmanager/0.27.0"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text


def _timelines(router: ServerThread, fingerprint: str) -> list[Timeline]:
    store = router.service.store
    result: list[Timeline] = router.call(lambda: store.alert_timelines(fingerprint))
    return result


def _settled(
    router: ServerThread, fingerprint: str, kinds: Callable[[list[Any]], bool]
) -> Timeline:
    """The alert's latest timeline, once the recorder wrote what `kinds` waits for."""
    found: list[Timeline] = []

    def ready() -> bool:
        found[:] = _timelines(router, fingerprint)
        return bool(found) and kinds([(e.kind, e.destination, e.data) for e in found[0].events])

    wait_until(ready, timeout=20)
    return found[0]


def _reasons(timeline: Timeline, destination: str) -> list[str]:
    return [
        e.data["reason"]
        for e in timeline.events
        if e.kind is EventKind.DEDUP and e.destination == destination
    ]


def _body(name: str, service: str, status: str = "firing") -> dict[str, Any]:
    body = webhook([({"alertname": name, "service": service}, {"summary": f"{name} on {service}"})])
    if status == "resolved":
        body["status"] = "resolved"
        for a in body["alerts"]:
            a["status"] = "resolved"
            a["endsAt"] = a["startsAt"]
    return body


def test_the_timeline_of_each_dedup_reason(router: ServerThread) -> None:
    firing = _body("CostDrift", "search")
    fp = firing["alerts"][0]["fingerprint"]
    _post(router, firing)
    _post(router, firing)  # the HA twin, within the ingest window
    _settled(router, fp, lambda es: any(k is EventKind.DELIVERED for k, _, _ in es))
    time.sleep(0.6)  # past the ingest window (0.5 s)
    _post(router, firing)  # Alertmanager's group_interval resend: nothing new to say
    _settled(router, fp, lambda es: sum(k is EventKind.DEDUP for k, _, _ in es) >= 2)
    time.sleep(2.2)  # past the route's repeat_interval
    _post(router, firing)
    _settled(router, fp, lambda es: sum(k is EventKind.DELIVERED for k, _, _ in es) >= 2)
    resolved = _body("CostDrift", "search", "resolved")
    resolved["alerts"][0]["startsAt"] = firing["alerts"][0]["startsAt"]
    _post(router, resolved)
    _settled(router, fp, lambda es: sum(k is EventKind.DELIVERED for k, _, _ in es) >= 3)
    time.sleep(0.6)
    _post(router, resolved)
    timeline = _settled(router, fp, lambda es: sum(k is EventKind.DEDUP for k, _, _ in es) >= 5)
    assert _reasons(timeline, "hook") == [
        "first_notification",
        "already_notified",
        "repeat_interval_elapsed",
        "resolved",
        "already_resolved",
    ]
    received = [e for e in timeline.events if e.kind is EventKind.RECEIVED]
    # The twin was a duplicate at ingest, and said so; the others were stored.
    assert [e.data["duplicate"] for e in received] == [False, True, False, False, False, False]
    assert received[0].data["user_agent"] == "Alertmanager/0.27.0"
    assert received[0].data["alert"]["annotations"] == {"summary": "CostDrift on search"}
    [resolve] = [e for e in timeline.events if e.kind is EventKind.RESOLVED][:1]
    assert resolve.data["per_hour"] == 12.0

    # A resolve whose firing never reached the destination; a route that sends no resolve.
    quiet = _body("Quiet", "search")
    qfp = quiet["alerts"][0]["fingerprint"]
    _post(router, quiet)
    _settled(router, qfp, lambda es: any(k is EventKind.DELIVERED for k, _, _ in es))
    gone = _body("Quiet", "search", "resolved")
    gone["alerts"][0]["startsAt"] = quiet["alerts"][0]["startsAt"]
    _post(router, gone)
    q = _settled(router, qfp, lambda es: sum(k is EventKind.DEDUP for k, _, _ in es) >= 3)
    assert _reasons(q, "quiet") == ["first_notification", "send_resolved_disabled"]
    # `everything` also matches Quiet's labels for the resolve (matchers only): its hook
    # never got the firing, so it is not told of the resolve either.
    assert _reasons(q, "hook") == ["firing_not_notified"]


def test_a_retried_then_delivered_notification_and_a_money_routed_escalation(
    router: ServerThread, slack_webhook: SlackWebhookServer, fake_pagerduty: FakePagerDuty
) -> None:
    slack_webhook.script(webhook_error(503, "service_unavailable"))
    body = _body("HighGPUCost", "trainer")
    fp = body["alerts"][0]["fingerprint"]
    _post(router, body)
    timeline = _settled(router, fp, lambda es: sum(k is EventKind.DELIVERED for k, _, _ in es) >= 2)
    kinds = [(e.kind, e.destination) for e in timeline.events]
    assert kinds[:3] == [(EventKind.RECEIVED, ""), (EventKind.CONTEXT, ""), (EventKind.ROUTED, "")]
    [route] = [e for e in timeline.events if e.kind is EventKind.ROUTED]
    # Escalated by money: the cost context made the `expensive` route match.
    assert route.data["route"] == "expensive, everything"
    assert route.data["when"] == [
        {"condition": "cost_per_hour > 100", "values": {"cost_per_hour": 130.0}}
    ]
    assert sorted(route.data["destinations"]) == ["hook", "pd"]
    [context] = [e for e in timeline.events if e.kind is EventKind.CONTEXT]
    assert context.data["values"][0]["value"] == 130.0
    assert context.data["values"][0]["query"] == "sum by (service) (service_cost_per_hour)"
    [attempt] = [e for e in timeline.events if e.kind is EventKind.ATTEMPT]
    assert attempt.destination == "hook"
    assert attempt.data["attempt"] == 1 and attempt.data["http_status"] == 503
    assert attempt.data["recoverable"] is True and attempt.data["retry_in"] > 0
    delivered = {e.destination: e for e in timeline.events if e.kind is EventKind.DELIVERED}
    assert delivered["hook"].data["attempt"] == 2
    assert delivered["pd"].data["ref"]["dedup_key"] == fake_pagerduty.events[0]["dedup_key"]
    # Each line reads as the page and `explain` show it.
    lines = [describe(e) for e in timeline.events]
    assert any("expensive" in line and "130" in line for line in lines), lines
    assert any("503" in line for line in lines), lines

    # The same timeline from the command line, from the store a running router uses.
    env = {**os.environ, "ALERT_ROUTER_STATE": router.service.settings.state}
    out = subprocess.run(
        [sys.executable, "-m", "receiver", "explain", fp],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert f"fingerprint {fp}" in out.stdout
    assert "HighGPUCost" in out.stdout and "$130.00/h" in out.stdout
    for line in lines:
        assert line in out.stdout
    by_labels = subprocess.run(
        [sys.executable, "-m", "receiver", "explain", "alertname=HighGPUCost", "service=trainer"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert by_labels.returncode == 0, by_labels.stderr
    assert f"fingerprint {fp}" in by_labels.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "receiver", "explain", "alertname=Nothing"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 1
    assert "no alert with alertname=Nothing" in missing.stderr
    # What was kept is plain JSON, as the API serves it.
    assert json.loads(json.dumps([e.data for e in timeline.events]))


def test_a_bot_message_is_recorded_with_its_permalink(
    make_router: Callable[..., Router], fake_pagerduty: FakePagerDuty, slack_api: SlackApiServer
) -> None:
    router = make_router(fake_pagerduty)
    body = webhook([alert("GPU-A", "critical")])
    fp = body["alerts"][0]["fingerprint"]
    router.post(body)
    timeline = _settled(
        router.server,
        fp,
        lambda es: any(k is EventKind.DELIVERED and d == "bot" for k, d, _ in es),
    )
    [bot] = [e for e in timeline.events if e.kind is EventKind.DELIVERED and e.destination == "bot"]
    [message] = slack_api.messages(DEFAULT_CHANNEL)
    ref = bot.data["ref"]
    assert (ref["channel"], ref["ts"]) == (DEFAULT_CHANNEL_ID, message.ts)
    assert ref["permalink"] == (
        f"{WORKSPACE_URL}archives/{DEFAULT_CHANNEL_ID}/p{message.ts.replace('.', '')}"
    )
    assert "permalink" not in next(
        e.data["ref"]
        for e in timeline.events
        if e.kind is EventKind.DELIVERED and e.destination == "pd"
    )


def test_the_timeline_of_a_dead_letter_retried_from_the_page(
    router: ServerThread, slack_webhook: SlackWebhookServer
) -> None:
    (router.service.settings.secrets_dir / "ui-password").write_text("s3cret")
    slack_webhook.script(webhook_error(404, "no_service"))
    body = _body("CostDrift", "billing")
    fp = body["alerts"][0]["fingerprint"]
    _post(router, body)
    _settled(router, fp, lambda es: any(k is EventKind.DEAD_LETTER for k, _, _ in es))
    auth = ("oncall-amy", "s3cret")
    listed = httpx.get(f"{router.url}/api/v1/dead-letters", auth=auth, timeout=10).json()
    [letter] = listed["dead_letters"]
    # The page's Retry button: a form with the CSRF token, from the page's own origin.
    answer = httpx.post(
        f"{router.url}/ui/dead-letters/{letter['id']}/retry",
        data={"csrf_token": listed["csrf_token"]},
        headers={"Origin": router.url},
        auth=auth,
        timeout=10,
    )
    assert answer.status_code == 303, answer.text
    timeline = _settled(router, fp, lambda es: any(k is EventKind.DELIVERED for k, _, _ in es))
    kinds = [e.kind for e in timeline.events if e.destination == "hook"]
    assert kinds == [
        EventKind.DEDUP,
        EventKind.ATTEMPT,
        EventKind.DEAD_LETTER,
        EventKind.REPLAYED,
        EventKind.DELIVERED,
    ]
    [replayed] = [e for e in timeline.events if e.kind is EventKind.REPLAYED]
    assert replayed.data == {"by": "ui:oncall-amy", "dead_letter": letter["id"]}
    [attempt] = [e for e in timeline.events if e.kind is EventKind.ATTEMPT]
    assert attempt.data["http_status"] == 404 and attempt.data["recoverable"] is False
    # Slack got it, once, after the retry.
    assert sum("CostDrift" in str(m) for m in slack_webhook.messages) == 1
