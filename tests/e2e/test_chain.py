"""The real chain, end to end: exporter -> Prometheus (the shipped alert rules) ->
Alertmanager -> alert-router -> Slack and PagerDuty (local servers speaking their protocols).

Each test prints its figures (run with `-s` to see them) and asserts them.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from tests.e2e.chain import (
    BOT,
    ONCALL,
    SLACK,
    Chain,
    Deliveries,
    cost_fields,
    metric,
    print_figures,
    slack_strings,
)
from tests.support import wait_until

pytestmark = pytest.mark.e2e

# The five seed alerts as the exporter's values make them fire (IdleGPU's GPU, at 0%, is
# also under LowGPUUtilization's 30%: six alerts), the destinations the shipped routes
# name for each (plus the e2e rules' Slack bot for team="finops"), and the cost context
# the router must attach, as Slack shows it.
FINOPS_WAVE = "finops"
GPU_WAVE = "gpu"


def expected_alerts(chain: Chain) -> list[tuple[str, str, str, set[str], dict[str, str]]]:
    """(wave, alertname, marker, destinations, Slack cost fields) per alert."""
    p = chain.platform
    return [
        (
            FINOPS_WAVE,
            "BudgetThresholdExceeded",
            p.stt,
            {ONCALL, SLACK, BOT},  # budget-page: severity critical
            {
                "Service cost": "$20.50/h",
                "Monthly projection": "$14,760",
                "Budget used": "92 %",
                "Jobs per hour": "28.47",
            },
        ),
        (
            FINOPS_WAVE,
            "HighGPUCost",
            p.lipsync,
            {ONCALL, SLACK, BOT},  # expensive-page: cost_per_hour 130 > 100; then cost
            {
                "Service cost": "$130.00/h",
                "Monthly projection": "$93,600",
                "Budget used": "40 %",
                "Jobs per hour": "419.35",
            },
        ),
        (
            FINOPS_WAVE,
            "HighCostPerJob",
            p.stt,
            {SLACK, BOT},  # cost: $20.50/h is under the paging threshold
            {
                "Service cost": "$20.50/h",
                "Budget used": "92 %",
                "Cost per job": "$0.72",
                "Queue depth": "42",
            },
        ),
        (
            GPU_WAVE,
            "LowGPUUtilization",
            p.node2,
            {SLACK},  # waste
            {"GPU utilization": "12 %", "Node cost": "$1.20/h", "Wasted": "$1.06/h"},
        ),
        (
            GPU_WAVE,
            "LowGPUUtilization",
            p.node3,
            {SLACK},
            {"GPU utilization": "0.0 %", "Node cost": "$4.10/h", "Wasted": "$4.10/h"},
        ),
        (
            GPU_WAVE,
            "IdleGPU",
            p.node3,
            {SLACK},
            {"GPU utilization": "0.0 %", "Node cost": "$4.10/h", "Wasted": "$4.10/h"},
        ),
    ]


# PagerDuty custom_details["cost_values"]: the raw numbers from Prometheus.
PD_COST_VALUES = {
    "BudgetThresholdExceeded": {
        "cost_per_hour": 20.5,
        "budget_used": 92.0,
        "monthly_projection": 20.5 * 720,
    },
    "HighGPUCost": {"cost_per_hour": 130.0, "budget_used": 40.0, "monthly_projection": 130 * 720},
}


def fire_finops_wave(chain: Chain) -> None:
    chain.set(chain.platform.services(stt_budget=92, lipsync_cost=130, stt_per_job=0.72))
    chain.set(chain.platform.gpus())


def fire_gpu_wave(chain: Chain) -> None:
    chain.set(chain.platform.gpus(node2_util=12, node3_util=0))


def silence_matchers(body: Mapping[str, Any]) -> dict[str, str]:
    """The label matchers of a Slack message's "Silence" link (Alertmanager's new-silence
    form, prefilled: `#/silences/new?filter={a="b",...}`)."""
    link = next(s for s in slack_strings(body) if "|Silence>" in s)
    url = re.search(r"<([^|>]*)\|Silence>", link)
    assert url is not None, link
    query = urllib.parse.urlsplit(url.group(1).replace("&amp;", "&")).fragment
    (text,) = urllib.parse.parse_qs(query.partition("?")[2])["filter"]
    return {
        name: value.replace('\\"', '"').replace("\\\\", "\\")
        for name, value in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', text)
    }


def delivered_all(
    expected: list[tuple[str, str, str, set[str], dict[str, str]]], status: str = "firing"
) -> Callable[[Deliveries], bool]:
    def check(found: Deliveries) -> bool:
        return all(
            found.count(dest, status, name, marker) >= 1
            for _, name, marker, dests, _ in expected
            for dest in dests
        )

    return check


def test_each_seed_alert_reaches_its_destinations_with_cost_context(chain: Chain) -> None:
    chain.start_router()
    chain.start_alertmanagers(1, group_by=["..."])
    expected = expected_alerts(chain)
    # Two waves, so that no Slack destination has more than five messages waiting at
    # once (past five the router sends one digest instead; digests have their own test).
    started = time.monotonic()
    fire_finops_wave(chain)
    wave1 = [e for e in expected if e[0] == FINOPS_WAVE]
    chain.wait_for(delivered_all(wave1), timeout=40, what="the finops alerts")
    fire_gpu_wave(chain)
    found = chain.wait_for(delivered_all(expected), timeout=40, what="all six alerts")
    elapsed = time.monotonic() - started
    time.sleep(1.5)  # anything extra (a duplicate, a stray destination) arrives now
    found = chain.deliveries()

    sent = 0
    for _, name, marker, dests, fields in expected:
        for dest in (SLACK, ONCALL, BOT):
            count = found.count(dest, "firing", name, marker)
            assert count == (1 if dest in dests else 0), (name, marker, dest, count)
            sent += count
        for dest in {SLACK, BOT} & dests:
            (message,) = found.find(dest, "firing", name, marker)
            shown = cost_fields(message.body)
            assert {k: shown.get(k) for k in fields} == fields, (name, dest, shown)
        if ONCALL in dests:
            (event,) = found.find(ONCALL, "firing", name, marker)
            details = event.body["payload"]["custom_details"]
            for key, value in PD_COST_VALUES[name].items():
                assert details["cost_values"][key] == pytest.approx(value), (name, key)
            assert details["route"] == ("budget-page" if "Budget" in name else "expensive-page")
    assert len(found.items) == sent

    # Alertmanager holds the six alerts, and a Slack message's prefilled silence link
    # names matchers that silence exactly its alert there.
    (alertmanager,) = chain.alertmanagers
    held = alertmanager.alerts()
    assert sum(1 for a in held if a["labels"].get("alertname") in {e[1] for e in expected}) == 6
    (message,) = found.find(SLACK, "firing", "LowGPUUtilization", chain.platform.node2)
    matchers = silence_matchers(message.body)
    assert matchers["Hostname"] == chain.platform.node2, matchers
    silence = alertmanager.add_silence(matchers, comment="from the Slack silence link")
    assert [s["id"] for s in alertmanager.silences()] == [silence]

    def silenced() -> list[dict[str, Any]]:
        return [a for a in alertmanager.alerts() if silence in a["status"]["silencedBy"]]

    wait_until(lambda: len(silenced()) == 1, timeout=10)
    assert silenced()[0]["labels"] == matchers
    print_figures(
        "five seed alerts",
        {
            "alerts": len(expected),
            "notifications": sent,
            "slack": len(found.to(SLACK)),
            "pagerduty": len(found.to(ONCALL)),
            "slack_bot": len(found.to(BOT)),
            "seconds": round(elapsed, 1),
        },
    )


def test_resolve_closes_pagerduty_and_edits_the_slack_bot_message(chain: Chain) -> None:
    chain.start_router()
    chain.start_alertmanagers(1, group_by=["..."])
    wave = [e for e in expected_alerts(chain) if e[0] == FINOPS_WAVE]
    fire_finops_wave(chain)
    fired = chain.wait_for(delivered_all(wave), timeout=40, what="the finops alerts")
    triggers = {d.alertname: d.body["dedup_key"] for d in fired.to(ONCALL, "firing")}
    assert set(triggers) == {"BudgetThresholdExceeded", "HighGPUCost"}

    # The platform recovers: under budget, cheaper, cheaper per job.
    chain.set(chain.platform.services(stt_budget=50, lipsync_cost=30, stt_per_job=0.2))
    found = chain.wait_for(delivered_all(wave, status="resolved"), timeout=40, what="the resolves")
    time.sleep(1.5)
    found = chain.deliveries()

    # PagerDuty: one resolve per trigger, with the trigger's dedup_key; the alerts close.
    resolves = {d.alertname: d.body["dedup_key"] for d in found.to(ONCALL, "resolved")}
    assert resolves == triggers
    assert len(found.to(ONCALL, "resolved")) == 2
    for key in triggers.values():
        incident = chain.pagerduty.incident(key)
        assert incident is not None and incident.status == "resolved"
        assert incident.actions == ["trigger", "resolve"]
    assert not chain.pagerduty.dropped_events

    # The Slack bot's original messages are edited to RESOLVED (chat.update), with a
    # reply in their thread; no new top-level message.
    messages = chain.slack_api.messages()
    assert len(messages) == len(wave)
    for message in messages:
        assert message.edits >= 1, message.text
        assert message.text.startswith("[RESOLVED] "), message.text
        assert len(message.replies) == 1 and message.replies[0].text.startswith("[RESOLVED]")
    assert len(found.bot_edits) >= len(wave)

    # The incoming webhook cannot edit: each resolve is a new message, with what the
    # episode cost (incident cost from Prometheus' range query over startsAt..endsAt).
    for _, name, marker, _, _ in wave:
        (resolved,) = found.find(SLACK, "resolved", name, marker)
        assert "Incident cost" in cost_fields(resolved.body), (name, cost_fields(resolved.body))
    print_figures(
        "resolve",
        {
            "alerts": len(wave),
            "pagerduty_resolves": len(resolves),
            "slack_bot_edits": len(found.bot_edits),
            "slack_resolved_messages": len(found.to(SLACK, "resolved")),
        },
    )


def test_ha_pair_resends_and_repeats_notify_once_per_episode(chain: Chain) -> None:
    # A 2s ingest window: the HA copies arriving together are answered as duplicates at
    # ingest; Alertmanager's later re-sends and repeats pass it and reach the ledger.
    chain.start_router(env={"ALERT_ROUTER_DEDUP_WINDOW": "2"})
    pair = chain.start_alertmanagers(
        2, group_by=["alertname"], group_interval="2s", repeat_interval="4s"
    )
    p = chain.platform
    alerts = [
        ("BudgetThresholdExceeded", p.stt, {ONCALL, SLACK, BOT}),
        ("LowGPUUtilization", p.node2, {SLACK}),
        ("LowGPUUtilization", p.node3, {SLACK}),
        ("IdleGPU", p.node3, {SLACK}),
    ]

    def all_delivered(
        status: str, subset: list[tuple[str, str, set[str]]]
    ) -> Callable[[Deliveries], bool]:
        return lambda found: all(
            found.count(dest, status, name, marker) >= 1
            for name, marker, dests in subset
            for dest in dests
        )

    chain.set(p.services(stt_budget=92))
    chain.set(p.gpus(node2_util=12))
    chain.wait_for(all_delivered("firing", alerts[:2]), timeout=40, what="first alerts")
    # A second GPU joins the LowGPUUtilization group: both Alertmanagers re-send the whole
    # group (with the first GPU again) at the next group_interval.
    chain.set(p.gpus(node2_util=12, node3_util=0))
    chain.wait_for(all_delivered("firing", alerts), timeout=40, what="all alerts")

    def resent_and_repeated() -> bool:
        samples = chain.metrics()
        return (
            metric(samples, "alert_router_dedup_decisions_total", reason="already_notified") >= 8
            and metric(samples, "alert_router_alerts_received_total", outcome="duplicate") >= 4
        )

    wait_until(resent_and_repeated, timeout=40)
    chain.set(p.services())
    chain.set(p.gpus())
    chain.wait_for(all_delivered("resolved", alerts), timeout=40, what="the resolves")
    time.sleep(5)  # both peers' resolved copies, and any late re-send, arrive by now
    found = chain.deliveries()
    samples = chain.metrics()

    counts = {
        (name, marker, dest, status): found.count(dest, status, name, marker)
        for name, marker, _ in alerts
        for dest in (SLACK, ONCALL, BOT)
        for status in ("firing", "resolved")
    }
    sent_by_peer = [int(am.notifications()["sent"]) for am in pair]
    figures = {
        "episodes": len(alerts),
        "webhooks_per_peer": sent_by_peer,
        "webhooks_received": int(metric(samples, "alert_router_webhooks_total", code="200")),
        "alerts_accepted": int(
            metric(samples, "alert_router_alerts_received_total", outcome="accepted")
        ),
        "ingest_duplicates": int(
            metric(samples, "alert_router_alerts_received_total", outcome="duplicate")
        ),
        **{
            reason: int(metric(samples, "alert_router_dedup_decisions_total", reason=reason))
            for reason in (
                "first_notification",
                "already_notified",
                "resolved",
                "already_resolved",
            )
        },
        "notifications": len(found.items),
        "duplicated": sum(max(0, n - 1) for n in counts.values()),
    }
    print_figures("HA pair, re-sends and repeats", figures)
    # Exactly one notification per episode (firing, then resolved) per destination named.
    for (name, marker, dest, status), count in counts.items():
        wanted = next(dests for n, m, dests in alerts if (n, m) == (name, marker))
        assert count == (1 if dest in wanted else 0), (name, marker, dest, status, count)
    assert len(found.items) == sum(counts.values())
    # Each peer sent on its own (no gossip), more than once per group (re-sends, repeats).
    assert all(n >= 4 for n in sent_by_peer), sent_by_peer
