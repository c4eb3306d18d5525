"""The real chain when things break: alert-router killed mid-storm, failing vendors,
Prometheus down, a broken rules file. Each test prints its figures (`-s`) and asserts them."""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.e2e.chain import (
    BOT,
    DESTINATIONS,
    ONCALL,
    SLACK,
    Chain,
    Deliveries,
    Delivery,
    cost_fields,
    e2e_rules,
    metric,
    print_figures,
    unavailable_note,
    write_rules,
)
from tests.fakes.alertmanager import am_alert
from tests.fakes.pagerduty import Answer as PagerDutyAnswer
from tests.fakes.slack import DROP, api_error, ratelimited, webhook_error
from tests.support import wait_until

pytestmark = pytest.mark.e2e

_MARKER = re.compile(r"\[s(\d{4})\]")


def storm_alerts(
    tag: str, count: int, *, bucket_size: int = 50, critical_every: int = 10
) -> list[dict[str, Any]]:
    """`count` distinct alerts as another Prometheus would post them: one in
    `critical_every` a critical budget alert of team finops (PagerDuty, Slack, the Slack
    bot), the others cost-per-job warnings (Slack). `bucket` groups `bucket_size` alerts."""
    alerts = []
    for i in range(count):
        common = {
            "service": f"storm-{tag}-{i:04d}",
            "namespace": "storm",
            "bucket": str(i // bucket_size),
        }
        if i % critical_every == 0:
            labels = {
                "alertname": "BudgetThresholdExceeded",
                "severity": "critical",
                "team": "finops",
                **common,
            }
        else:
            labels = {
                "alertname": "HighCostPerJob",
                "severity": "warning",
                "team": "ml-platform",
                "queue_name": f"q{i % 7}",
                **common,
            }
        alerts.append(am_alert(labels, {"summary": f"storm alert [s{i:04d}]"}))
    return alerts


def routed_to(alert: Mapping[str, Any]) -> set[str]:
    """Where the rules send a storm alert (shipped routes + the e2e bot route)."""
    if alert["labels"]["severity"] == "critical":
        return {ONCALL, SLACK, BOT}
    return {SLACK}


def marker_ids(delivery: Delivery) -> set[int]:
    return {int(found) for found in _MARKER.findall(delivery.text)}


def per_destination(found: Deliveries, status: str = "firing") -> dict[str, Counter[int]]:
    """How often each storm alert was delivered, per destination."""
    counts: dict[str, Counter[int]] = {dest: Counter() for dest in DESTINATIONS}
    for delivery in found.items:
        if delivery.status == status:
            counts[delivery.destination].update(marker_ids(delivery))
    return counts


def expected_per_destination(alerts: Sequence[Mapping[str, Any]]) -> dict[str, set[int]]:
    expected: dict[str, set[int]] = {dest: set() for dest in DESTINATIONS}
    for i, alert in enumerate(alerts):
        for dest in routed_to(alert):
            expected[dest].add(i)
    return expected


def all_delivered(
    expected: Mapping[str, set[int]], status: str = "firing"
) -> Callable[[Deliveries], bool]:
    def check(found: Deliveries) -> bool:
        counts = per_destination(found, status)
        return all(ids <= set(counts[dest]) for dest, ids in expected.items())

    return check


def post_in_batches(
    chain: Chain, alerts: Sequence[dict[str, Any]], batch: int, pause: float
) -> threading.Thread:
    """Post `alerts` to the Alertmanager in batches, in a thread (the storm goes on
    while the test kills the router)."""
    (alertmanager,) = chain.alertmanagers

    def run() -> None:
        for start in range(0, len(alerts), batch):
            alertmanager.post_alerts(alerts[start : start + batch])
            time.sleep(pause)

    thread = threading.Thread(target=run, name="storm", daemon=True)
    thread.start()
    return thread


# -- SIGKILL mid-storm -------------------------------------------------------------------------


STORM = 2000


def test_sigkill_mid_storm_loses_nothing(chain: Chain) -> None:
    chain.start_router(slack_per_second=5, pagerduty_per_minute=6000)
    (alertmanager,) = chain.start_alertmanagers(
        1, group_by=["alertname", "bucket"], group_interval="2s", repeat_interval="1h"
    )
    alerts = storm_alerts(chain.tag, STORM)
    expected = expected_per_destination(alerts)
    started = time.monotonic()
    poster = post_in_batches(chain, alerts, batch=250, pause=0.3)

    def mid_storm() -> bool:
        samples = chain.metrics()
        accepted = metric(samples, "alert_router_alerts_received_total", outcome="accepted")
        delivered = metric(samples, "alert_router_notifications_total", outcome="delivered")
        return accepted >= 600 and delivered >= 1

    wait_until(mid_storm, timeout=60, interval=0.02)
    first = chain.router
    assert first is not None
    first.kill()
    killed_at = time.monotonic()
    time.sleep(1.0)  # Alertmanager's webhooks fail meanwhile; it retries them
    # What had reached each destination when the router died (the local servers have
    # finished reading whatever it sent): a send in flight then may have happened without
    # its record (the documented crash window), so at most the last message each
    # destination accepted may come again.
    before = chain.deliveries()
    last_before = {
        dest: max((d.request for d in before.to(dest)), default=-1) for dest in DESTINATIONS
    }
    delivered_before = sum(len(c) for c in per_destination(before).values())
    chain.start_router()
    poster.join(timeout=30)
    found = chain.wait_for(all_delivered(expected), timeout=150, what="the whole storm")
    elapsed = time.monotonic() - started
    time.sleep(2.0)
    found = chain.deliveries()

    counts = per_destination(found)
    lost = sum(len(ids - set(counts[dest])) for dest, ids in expected.items())
    strays = sum(len(set(counts[dest]) - ids) for dest, ids in expected.items())
    duplicated: dict[str, int] = {}
    for dest in DESTINATIONS:
        again = {i for i, n in counts[dest].items() if n > 1}
        duplicated[dest] = sum(counts[dest][i] - 1 for i in again)
        window = {
            i for d in before.to(dest) if d.request == last_before[dest] for i in marker_ids(d)
        }
        # Every duplicate is an alert of the last message sent before the kill.
        assert again <= window, (dest, sorted(again - window)[:10])
        assert all(counts[dest][i] == 2 for i in again), dest
    deliveries = sum(len(ids) for ids in expected.values())
    second = chain.metrics()
    figures = {
        "alerts_sent": STORM,
        "deliveries_expected": deliveries,
        "delivered_before_kill": delivered_before,
        "killed_after_s": round(killed_at - started, 1),
        "delivered": sum(len(set(c)) for c in counts.values()),
        "duplicated": sum(duplicated.values()),
        "duplicated_by_destination": duplicated,
        "lost": lost,
        "alertmanager_requests_failed_while_down": int(
            alertmanager.notifications()["requests_failed"]
        ),
        "ingest_duplicates_after_restart": int(
            metric(second, "alert_router_alerts_received_total", outcome="duplicate")
        ),
        "seconds": round(elapsed, 1),
    }
    print_figures("SIGKILL mid-storm", figures)
    assert first.proc.returncode == -9
    assert lost == 0
    assert strays == 0
    assert delivered_before < deliveries  # the kill really was mid-storm


# -- vendors failing 30% of requests -----------------------------------------------------------


FAILURE_RATE = 0.3
SEED = 20240611
RETRY_AFTER = 2.0


def pagerduty_chaos(count: int, seed: int) -> list[PagerDutyAnswer]:
    """Scripted answers for the next `count` PagerDuty requests: 30% fail with 500, 429
    with Retry-After, or a dropped connection; the rest are handled normally."""
    rng = random.Random(seed)
    failures = (
        PagerDutyAnswer(500),
        PagerDutyAnswer(429, headers={"Retry-After": f"{RETRY_AFTER:g}"}),
        PagerDutyAnswer(drop=True),
    )
    return [
        rng.choice(failures) if rng.random() < FAILURE_RATE else PagerDutyAnswer(process=True)
        for _ in range(count)
    ]


def retry_after_violations(requests: Iterable[tuple[float, int, float]]) -> list[str]:
    """(received at, status, Retry-After of a 429) -> the requests that came too early:
    after a 429, no request to that destination before Retry-After has passed."""
    problems = []
    not_before = 0.0
    for at, status, retry_after in sorted(requests, key=lambda r: r[0]):
        # 10 ms: the router's sleep may wake a hair early on a busy machine.
        if at < not_before - 0.01:
            problems.append(f"request at {at:.3f} before Retry-After ended at {not_before:.3f}")
        if status == 429:
            not_before = max(not_before, at + retry_after)
    return problems


def test_thirty_percent_vendor_failures_still_deliver_everything(chain: Chain) -> None:
    chain.slack_webhook.fail_randomly(
        FAILURE_RATE,
        seed=SEED,
        answers=[
            webhook_error(500, "internal_error"),
            webhook_error(429, "rate_limited", retry_after=RETRY_AFTER),
            DROP,
        ],
    )
    chain.slack_api.fail_randomly(
        FAILURE_RATE,
        seed=SEED + 1,
        answers=[api_error("internal_error", status=500), ratelimited(RETRY_AFTER), DROP],
    )
    chain.pagerduty.script(*pagerduty_chaos(2000, SEED + 2))
    chain.start_router(slack_per_second=5, pagerduty_per_minute=6000)
    (alertmanager,) = chain.start_alertmanagers(1, group_by=["..."])
    alerts = storm_alerts(chain.tag, 80, critical_every=4)
    expected = expected_per_destination(alerts)
    started = time.monotonic()
    # A few alerts at a time, so that Slack gets single messages as well as digests.
    for start in range(0, len(alerts), 4):
        alertmanager.post_alerts(alerts[start : start + 4])
        time.sleep(0.3)
    chain.wait_for(all_delivered(expected), timeout=120, what="every firing alert")
    for start in range(0, len(alerts), 4):
        alertmanager.resolve(alerts[start : start + 4])
        time.sleep(0.3)
    found = chain.wait_for(all_delivered(expected, "resolved"), timeout=120, what="every resolve")
    elapsed = time.monotonic() - started
    time.sleep(1.0)
    found = chain.deliveries()

    figures: dict[str, object] = {"alerts": len(alerts)}
    duplicated = 0
    for status in ("firing", "resolved"):
        counts = per_destination(found, status)
        for dest, ids in expected.items():
            assert set(counts[dest]) == ids, (status, dest)
            duplicated += sum(n - 1 for n in counts[dest].values())
    # Requests each local server saw, and how many of them failed.
    webhook = chain.slack_webhook.requests
    api = chain.slack_api.requests
    pagerduty = list(chain.pagerduty.requests)
    failed = {
        SLACK: sum(1 for r in webhook if r.status != 200),
        BOT: sum(1 for r in api if r.status != 200 or not _ok(r.answer)),
        ONCALL: sum(1 for r in pagerduty if r.status != 202),
    }
    totals = {SLACK: len(webhook), BOT: len(api), ONCALL: len(pagerduty)}
    limited = {
        SLACK: sum(1 for r in webhook if r.status == 429),
        BOT: sum(1 for r in api if r.status == 429),
        ONCALL: sum(1 for r in pagerduty if r.status == 429),
    }
    # Every 429 these scripts answer carries Retry-After: 2 (seconds).
    violations = (
        retry_after_violations((r.at, r.status, RETRY_AFTER) for r in webhook)
        + retry_after_violations((r.at, r.status, RETRY_AFTER) for r in api)
        + retry_after_violations((r.received_at, r.status or 0, RETRY_AFTER) for r in pagerduty)
    )
    figures.update(
        {
            "requests": totals,
            "failed": failed,
            "of_which_429": limited,
            "delivered": len(found.items),
            "duplicated": duplicated,
            "lost": 0,
            "retry_after_violations": len(violations),
            "seconds": round(elapsed, 1),
        }
    )
    print_figures("30% vendor failures", figures)
    assert not violations, violations[:5]
    assert duplicated == 0
    # The failures really happened, at every destination.
    for dest in DESTINATIONS:
        assert failed[dest] >= 3, (dest, failed)
    assert sum(limited.values()) >= 3, limited
    assert chain.pagerduty.dropped_events == []


def _ok(answer: object) -> bool:
    return isinstance(answer, Mapping) and answer.get("ok") is True


# -- Prometheus down -----------------------------------------------------------------------------


def test_prometheus_down_costs_only_the_context(chain: Chain) -> None:
    p = chain.platform
    # Values under every threshold: context for the alerts posted below, no rule fires.
    chain.set(p.services(stt_budget=55, stt_cost=42))
    chain.set(p.gpus())
    chain.prometheus.sync()
    chain.start_router()
    (alertmanager,) = chain.start_alertmanagers(1, group_by=["..."])
    group_wait = 1.0
    timeout = 2.0  # the e2e rules' prometheus.timeout (shipped)

    def budget_alert(n: int) -> dict[str, Any]:
        return am_alert(
            {
                "alertname": "BudgetThresholdExceeded",
                "severity": "critical",
                "team": "finops",
                "service": p.stt,
                "namespace": "ai-models",
                "n": str(n),
            },
            {"summary": f"budget alert [s{n:04d}]"},
            starts_at=datetime.now(UTC),
        )

    def delivered(n: int) -> Callable[[Deliveries], bool]:
        return lambda found: all(
            any(n in marker_ids(d) for d in found.to(dest)) for dest in (ONCALL, SLACK)
        )

    # Prometheus answers: the alert carries its cost context.
    alertmanager.post_alerts([budget_alert(0)])
    found = chain.wait_for(delivered(0), timeout=30, what="alert 0")
    first = _one(found, SLACK, 0)
    assert cost_fields(first.body).get("Service cost") == "$42.00/h"
    assert unavailable_note(first.body) == ""

    # Prometheus stops: alerts keep flowing, without context, as fast as before plus at
    # most the query timeout.
    chain.prometheus.stop()
    latencies = []
    try:
        for n in range(1, 6):
            posted = time.monotonic()
            alertmanager.post_alerts([budget_alert(n)])
            found = chain.wait_for(delivered(n), timeout=30, what=f"alert {n} without context")
            arrived = max(_one(found, dest, n).at for dest in (ONCALL, SLACK))
            latencies.append(arrived - posted)
            message = _one(found, SLACK, n)
            assert cost_fields(message.body) == {}
            assert "Prometheus unreachable" in unavailable_note(message.body)
            event = _one(found, ONCALL, n).body
            details = event["payload"]["custom_details"]
            assert "cost_values" not in details
            assert "Prometheus unreachable" in str(details["cost_context_unavailable"])
    finally:
        chain.prometheus.start()
    # Prometheus is back: context returns (after the 5s negative cache at most).
    alertmanager.post_alerts([budget_alert(9)])
    found = chain.wait_for(delivered(9), timeout=30, what="alert 9 with context")
    message = _one(found, SLACK, 9)
    assert cost_fields(message.body).get("Service cost") == "$42.00/h", cost_fields(message.body)
    assert unavailable_note(message.body) == ""
    samples = chain.metrics()
    print_figures(
        "Prometheus down",
        {
            "alerts_without_context": len(latencies),
            "max_latency_s": round(max(latencies), 2),
            "context_unavailable": int(
                metric(
                    samples,
                    "alert_router_context_unavailable_total",
                    reason="prometheus_unreachable",
                )
            ),
            "lost": 0,
        },
    )
    # Alertmanager's group_wait, the query timeout, and a second for the rest of the trip
    # (Slack's 1 message/s: two sends to finops-slack can be queued).
    assert max(latencies) < group_wait + timeout + 2.5, latencies


def _one(found: Deliveries, dest: str, n: int) -> Delivery:
    matches = [d for d in found.to(dest) if n in marker_ids(d)]
    assert len(matches) == 1, (dest, n, len(matches))
    return matches[0]


# -- an invalid rules file -----------------------------------------------------------------------


def test_invalid_rules_file_keeps_the_old_rules_then_a_valid_change_applies(
    chain: Chain,
) -> None:
    rules_path = chain.write_rules()
    router = chain.start_router()
    chain.start_alertmanagers(1, group_by=["..."])
    tag = chain.tag

    def reloads(outcome: str) -> float:
        return metric(chain.metrics(), "alert_router_config_reloads_total", outcome=outcome)

    def fire(service: str, cost: float) -> None:
        labels = {"service": service, "namespace": "ai-models"}
        chain.exporter.set("service_cost_per_hour", labels, cost)

    def paged(service: str) -> int:
        return chain.deliveries().count(ONCALL, "firing", "HighGPUCost", service)

    def reached(service: str) -> Callable[[Deliveries], bool]:
        return lambda found: found.count(SLACK, "firing", "HighGPUCost", service) == 1

    def expensive_page(rules: dict[str, Any]) -> dict[str, Any]:
        route: dict[str, Any] = next(r for r in rules["routes"] if r["name"] == "expensive-page")
        return route

    # HighGPUCost at $70/h: under the expensive-page threshold ($100/h): Slack only.
    fire(f"svc-a-{tag}", 70)
    chain.wait_for(reached(f"svc-a-{tag}"), timeout=40, what="svc-a")
    assert paged(f"svc-a-{tag}") == 0

    # A broken rules file (a route to a destination that does not exist) is refused.
    failures = reloads("failure")
    write_rules(
        rules_path,
        e2e_rules(
            chain.prometheus.url,
            edit=lambda rules: expensive_page(rules).update(to=["nowhere"]),
        ),
    )
    wait_until(lambda: reloads("failure") > failures, timeout=15)
    refusal = next(
        entry
        for entry in router.logs()
        if str(entry.get("message", "")).startswith("rules reload refused")
    )
    assert any("'nowhere' is not defined" in p for p in refusal["problems"]), refusal
    assert metric(chain.metrics(), "alert_router_config_last_reload_successful") == 0
    assert httpx.get(f"{router.url}/readyz", timeout=5).status_code == 200
    # Routing goes on with the old rules.
    fire(f"svc-b-{tag}", 75)
    chain.wait_for(reached(f"svc-b-{tag}"), timeout=40, what="svc-b under the old rules")
    assert paged(f"svc-b-{tag}") == 0

    # A valid change: page from $60/h. It applies, and $70/h now pages.
    successes = reloads("success")
    write_rules(
        rules_path,
        e2e_rules(
            chain.prometheus.url,
            edit=lambda rules: expensive_page(rules).update(when={"cost_per_hour": "> 60"}),
        ),
    )
    wait_until(lambda: reloads("success") > successes, timeout=15)
    assert metric(chain.metrics(), "alert_router_config_last_reload_successful") == 1
    fire(f"svc-c-{tag}", 70)
    found = chain.wait_for(
        lambda found: (
            found.count(ONCALL, "firing", "HighGPUCost", f"svc-c-{tag}") == 1
            and reached(f"svc-c-{tag}")(found)
        ),
        timeout=40,
        what="svc-c paged under the new rules",
    )
    print_figures(
        "rules reload",
        {
            "reloads_refused": int(reloads("failure")),
            "reloads_applied": int(reloads("success")),
            "routed_with_old_rules": 2,
            "routed_with_new_rules": 1,
            "lost": 0,
        },
    )
    assert len(found.to(ONCALL)) == 1
    assert len(found.to(SLACK)) == 3
