"""The events the steps record, built from what they hold: a webhook's alerts, a routing
batch with its cost context and the store's decisions, a delivery, a failed try."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from receiver.config.rules import Rules, parse_rules
from receiver.context.incident import INCIDENT_COST
from receiver.dedup import SENDING
from receiver.events import EventKind
from receiver.history import capture
from receiver.models import Alert, ContextValue, CostContext, DedupReason, Unit
from receiver.routing.routes import Choice, choose
from receiver.store.base import Decision, IngestResult, OutboxItem

RULES = """
destinations:
  finops: {slack: {webhook_url: {secret: slack-webhook-url}}}
  oncall: {pagerduty: {routing_key: {secret: pagerduty-key}}}
context:
  cost_per_hour:
    query: sum by (service) (service_cost_per_hour)
    unit: usd_per_hour
routes:
  - name: expensive
    matchers: ['alertname="HighGPUCost"']
    when: {cost_per_hour: "> 50"}
    to: [oncall]
    continue: true
  - name: costs
    matchers: ['alertname=~"High.*"']
    to: [finops]
"""
START = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)


def _alert(status: str = "firing") -> Alert:
    return Alert(
        fingerprint="f1",
        status=status,
        labels={"alertname": "HighGPUCost", "service": "trainer"},
        annotations={"summary": "trainer costs"},
        starts_at=START,
        ends_at=START + timedelta(hours=2) if status == "resolved" else None,
        receiver="gpu",
        group_key='{}:{alertname="HighGPUCost"}',
        external_url="http://alertmanager:9093",
    )


def _context(*extra: ContextValue) -> CostContext:
    return CostContext(
        values=(ContextValue("cost_per_hour", "Service cost", 61.5, Unit.USD_PER_HOUR), *extra),
        unavailable=(("budget_used", "prometheus_unreachable"),),
    )


def _choices(
    rules: Rules, alerts: Sequence[Alert], contexts: Sequence[CostContext]
) -> list[Choice]:
    """The routing's choices, as the pipeline makes them for the batch it records."""
    return [choose(rules, a, c.numbers()) for a, c in zip(alerts, contexts, strict=True)]


def test_a_duplicate_copy_is_received_at_ingest_and_the_stored_one_with_its_routing(
    tmp_path: Path,
) -> None:
    rules = parse_rules(RULES, tmp_path / "routes.yaml")
    alerts = [replace(_alert(), user_agent="Alertmanager/0.27.0")] * 2
    result = IngestResult(1, 1, (False, True))
    # Ingest records only the copy it did not store.
    [(copy, copy_meta)] = list(capture.received(alerts, result, at=5.0))
    assert copy.kind is EventKind.RECEIVED and copy.at == 5.0
    assert copy.data["duplicate"] is True
    assert "alert" not in copy.data  # the same alert, kept with the stored copy
    assert copy_meta is not None and copy_meta.episode == _alert().episode
    # Routing records the stored one, at the time it was stored.
    recorded = list(
        capture.routed(
            rules,
            alerts[:1],
            [_context()],
            _choices(rules, alerts[:1], [_context()]),
            [],
            stored_at=[4.5],
            at=7.0,
            sending=SENDING,
        )
    )
    first, meta = recorded[0]
    assert first.kind is EventKind.RECEIVED and first.at == 4.5
    assert first.data["duplicate"] is False
    assert first.data["alert"]["labels"] == {"alertname": "HighGPUCost", "service": "trainer"}
    assert first.data["user_agent"] == "Alertmanager/0.27.0"
    assert first.data["group_key"] == '{}:{alertname="HighGPUCost"}'
    assert meta is not None and meta.episode == _alert().episode
    assert meta.started_at == START.timestamp() and meta.alertname == "HighGPUCost"


def test_routing_records_context_route_with_the_values_compared_and_each_decision(
    tmp_path: Path,
) -> None:
    rules = parse_rules(RULES, tmp_path / "routes.yaml")
    alert = _alert()
    decisions = [
        Decision("oncall", alert.episode, "firing", DedupReason.FIRST),
        Decision("finops", alert.episode, "firing", DedupReason.ALREADY_NOTIFIED),
    ]
    events = [
        e
        for e, _ in capture.routed(
            rules,
            [alert],
            [_context()],
            _choices(rules, [alert], [_context()]),
            decisions,
            stored_at=[6.0],
            at=7.0,
            sending=SENDING,
        )
    ]
    assert [(e.kind, e.destination) for e in events] == [
        (EventKind.RECEIVED, ""),
        (EventKind.CONTEXT, ""),
        (EventKind.ROUTED, ""),
        (EventKind.DEDUP, "oncall"),
        (EventKind.DEDUP, "finops"),
    ]
    _, context, route, oncall, finops = events
    assert context.data["values"][0]["query"] == "sum by (service) (service_cost_per_hour)"
    assert context.data["unavailable"][0]["reason"] == "prometheus_unreachable"
    assert route.data["route"] == "expensive, costs"
    assert route.data["destinations"] == ["oncall", "finops"]
    assert route.data["when"] == [
        {"condition": "cost_per_hour > 50", "values": {"cost_per_hour": 61.5}}
    ]
    assert oncall.data == {"status": "firing", "reason": "first_notification", "sent": True}
    assert finops.data["sent"] is False and finops.data["reason"] == "already_notified"


def test_a_resolve_records_where_its_firing_may_have_gone_and_what_it_cost(
    tmp_path: Path,
) -> None:
    rules = parse_rules(RULES, tmp_path / "routes.yaml")
    alert = _alert("resolved")
    context = _context(ContextValue(INCIDENT_COST, "Incident cost", 123.0, Unit.USD))
    events = [
        e
        for e, _ in capture.routed(
            rules,
            [alert],
            [context],
            _choices(rules, [alert], [context]),
            [],
            stored_at=[8.0],
            at=9.0,
            sending=SENDING,
        )
    ][1:]
    assert [e.kind for e in events] == [EventKind.CONTEXT, EventKind.ROUTED, EventKind.RESOLVED]
    # The money condition no longer decides: every route its labels match.
    assert events[1].data["destinations"] == ["oncall", "finops"]
    assert events[1].data["when"] == [] and events[1].data["resolve"] is True
    assert events[1].data["matchers"] == ['alertname="HighGPUCost"', 'alertname=~"High.*"']
    assert events[2].data == {"cost": 123.0, "duration": 7200.0, "per_hour": 61.5}


def _item(attempts: int) -> OutboxItem:
    return OutboxItem(
        id="1",
        destination="finops",
        route="costs",
        reason=DedupReason.FIRST,
        alert=_alert(),
        context=_context(),
        received_at=1.0,
        attempts=attempts,
        ref=None,
    )


def test_delivery_records_the_ref_with_its_permalink_and_the_try() -> None:
    ref = {"channel": "C1", "ts": "1700000000.000100"}
    [(event, _)] = capture.delivered(
        [_item(1)], [ref], at=3.0, permalink="https://w.slack.com/archives/C1/p1700000000000100"
    )
    assert event.kind is EventKind.DELIVERED and event.destination == "finops"
    assert event.data["attempt"] == 2 and event.data["digest"] == 1
    assert event.data["ref"] == {
        **ref,
        "permalink": "https://w.slack.com/archives/C1/p1700000000000100",
    }


def test_a_failed_try_is_an_attempt_and_the_last_one_a_dead_letter() -> None:
    retried = [
        e
        for e, _ in capture.attempt_failed(
            [_item(0)],
            at=2.0,
            error="HTTP 503",
            http_status=503,
            recoverable=True,
            retry_in=4.0,
            retry_after=4.0,
        )
    ]
    assert [e.kind for e in retried] == [EventKind.ATTEMPT]
    assert retried[0].data["retry_in"] == 4.0 and retried[0].data["http_status"] == 503
    final = [
        e.kind
        for e, _ in capture.attempt_failed(
            [_item(2)],
            at=2.0,
            error="HTTP 404 no_service",
            http_status=404,
            recoverable=False,
            retry_in=None,
            retry_after=None,
        )
    ]
    assert final == [EventKind.ATTEMPT, EventKind.DEAD_LETTER]
