"""One readable line per event, for every kind."""

from __future__ import annotations

from typing import Any

import pytest

from receiver.events import Event, EventKind
from receiver.history.timeline import describe
from tests.history.support import CONTEXT

CASES: list[tuple[EventKind, str, dict[str, Any], str]] = [
    # A webhook, with everything the sender told us.
    (
        EventKind.RECEIVED,
        "",
        {
            "receiver": "alert-router",
            "group_key": '{}:{alertname="HighGPUCost"}',
            "external_url": "http://alertmanager:9093",
            "user_agent": "Alertmanager/0.27.0",
            "source": "alertmanager",
            "status": "firing",
            "duplicate": False,
        },
        'received firing from alertmanager (receiver "alert-router", group'
        ' {}:{alertname="HighGPUCost"}, from http://alertmanager:9093, Alertmanager/0.27.0)',
    ),
    # An exact copy, seen at ingest.
    (
        EventKind.RECEIVED,
        "",
        {"source": "grafana", "status": "resolved", "duplicate": True},
        "received resolved from grafana; a copy already received, not stored again",
    ),
    (
        EventKind.CONTEXT,
        "",
        CONTEXT,
        "cost context: GPUs 8; GPU $/h $62.10/h; budget unavailable (prometheus_down)",
    ),
    (EventKind.CONTEXT, "", {"values": [], "unavailable": []}, "cost context: none"),
    # The route, its matchers and the money compared.
    (
        EventKind.ROUTED,
        "",
        {
            "route": "gpu-costs",
            "matchers": ['alertname="HighGPUCost"'],
            "when": [{"condition": "cost_per_hour > 50", "values": {"cost_per_hour": 62.1}}],
            "destinations": [],
        },
        'routed by route gpu-costs: alertname="HighGPUCost" matched;'
        " when cost_per_hour > 50 (62.10)",
    ),
    (
        EventKind.ROUTED,
        "",
        {
            "route": "all",
            "matchers": [],
            "when": [{"condition": "a > 1 and b < 2", "values": {"a": 3, "b": 1.5}}],
            "destinations": ["finops-bot", "pagerduty"],
        },
        "routed by route all: matches every alert; when a > 1 and b < 2 (a=3.00, b=1.50);"
        " to finops-bot, pagerduty",
    ),
    (
        EventKind.ROUTED,
        "",
        {"route": "", "matchers": [], "when": [], "destinations": []},
        "no route matched: sent nowhere",
    ),
    # A resolve: where its firing may have gone, by matchers alone.
    (
        EventKind.ROUTED,
        "",
        {
            "route": "expensive-page, cost",
            "matchers": ['alertname=~"HighGPUCost|HighCostPerJob"'],
            "when": [],
            "destinations": ["oncall", "finops-slack"],
            "resolve": True,
        },
        'routed by route expensive-page, cost: alertname=~"HighGPUCost|HighCostPerJob" matched;'
        " to oncall, finops-slack (a resolve goes where its firing may have gone)",
    ),
    (
        EventKind.DEDUP,
        "finops-bot",
        {"status": "firing", "reason": "already_notified", "sent": False},
        "finops-bot: not sent — already_notified",
    ),
    (
        EventKind.DEDUP,
        "pagerduty",
        {"status": "firing", "reason": "first_notification", "sent": True},
        "pagerduty: queued to send — first_notification",
    ),
    # A failed try with the vendor's Retry-After.
    (
        EventKind.ATTEMPT,
        "pagerduty",
        {
            "attempt": 2,
            "error": "503 Service Unavailable",
            "http_status": 503,
            "recoverable": True,
            "retry_in": 4.0,
            "retry_after": 4,
        },
        "pagerduty: try 2 failed: 503 Service Unavailable; next try in 4s (Retry-After 4)",
    ),
    # A backoff with jitter: its delay as a person reads it.
    (
        EventKind.ATTEMPT,
        "hook",
        {
            "attempt": 1,
            "error": "slack webhook hook: HTTP 500 internal_error",
            "http_status": 500,
            "recoverable": True,
            "retry_in": 0.0436035,
            "retry_after": None,
        },
        "hook: try 1 failed: slack webhook hook: HTTP 500 internal_error; next try in 44 ms",
    ),
    (
        EventKind.ATTEMPT,
        "hook",
        {"attempt": 6, "error": "timed out", "recoverable": True, "retry_in": 151.7},
        "hook: try 6 failed: timed out; next try in 2m32s",
    ),
    # A refusal: not tried again.
    (
        EventKind.ATTEMPT,
        "slack",
        {
            "attempt": 1,
            "error": "channel_not_found",
            "http_status": 404,
            "recoverable": False,
            "retry_in": None,
            "retry_after": None,
        },
        "slack: try 1 failed: HTTP 404 channel_not_found; not tried again (the vendor refused it)",
    ),
    (
        EventKind.DELIVERED,
        "finops-bot",
        {"attempt": 1, "ref": {"channel": "#gpu-costs", "ts": "1700000000.000100"}, "digest": 1},
        "delivered to finops-bot (#gpu-costs, ts 1700000000.000100)",
    ),
    (
        EventKind.DELIVERED,
        "pagerduty",
        {"attempt": 3, "ref": {"dedup_key": "f1@2026"}, "digest": 4},
        "delivered to pagerduty (dedup_key f1@2026) on try 3, in one message with 3 other alerts",
    ),
    (
        EventKind.DEAD_LETTER,
        "pagerduty",
        {"error": "HTTP 400 invalid routing key", "attempts": 1},
        "pagerduty: kept as a dead letter after 1 tries: HTTP 400 invalid routing key",
    ),
    (
        EventKind.REPLAYED,
        "pagerduty",
        {"by": "ui:alice", "dead_letter": "12"},
        "pagerduty: queued again from dead letter 12 by ui:alice",
    ),
    (
        EventKind.SILENCED,
        "",
        {"by": "@bob", "silence_id": "abc", "duration": 7200},
        "silenced for 2h by @bob from Slack (silence abc)",
    ),
    (
        EventKind.ACKNOWLEDGED,
        "",
        {"by": "@bob", "destination": "pagerduty"},
        "acknowledged in pagerduty by @bob from Slack",
    ),
    (
        EventKind.RESOLVED,
        "",
        {"cost": 12.5, "duration": 4800.0, "per_hour": 9.375},
        "resolved after 1h 20m; incident cost $12.50 at $9.38/h",
    ),
    (
        EventKind.RESOLVED,
        "",
        {"cost": None, "duration": 30.0, "per_hour": None},
        "resolved after 30s; incident cost unknown",
    ),
]


@pytest.mark.parametrize(("kind", "destination", "data", "line"), CASES)
def test_each_event_reads_as_one_line(
    kind: EventKind, destination: str, data: dict[str, Any], line: str
) -> None:
    assert describe(Event(1.0, "f1", "f1@1", kind, data, destination)) == line


def test_every_kind_has_a_case() -> None:
    assert {kind for kind, *_ in CASES} == set(EventKind)


@pytest.mark.parametrize("kind", list(EventKind))
def test_missing_data_still_reads(kind: EventKind) -> None:
    # An event written by another version, without some keys: a line all the same.
    assert describe(Event(1.0, "f1", "f1@1", kind, {}, "d"))
