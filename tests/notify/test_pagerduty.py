"""The PagerDuty notifier against a local PagerDuty Events API v2 on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest

from receiver.config.secrets import SecretStore
from receiver.models import (
    Alert,
    ContextValue,
    CostContext,
    DedupReason,
    Notification,
    Unit,
)
from receiver.notify.base import NotifyError, Ref
from receiver.notify.pagerduty.notifier import (
    MAX_EVENT_BYTES,
    MAX_SUMMARY_CHARS,
    PagerDutyNotifier,
    dedup_key,
)
from tests.fakes.pagerduty import (
    ROUTING_KEY,
    Answer,
    FakePagerDuty,
)
from tests.support import free_port

STARTS = datetime(2026, 3, 1, 12, 30, 15, 250_000, tzinfo=UTC)
SECRET_NAME = "pagerduty-key"
OTHER_KEY = "An0therRout1ngKeyOf32Characters9"
# What every notify must return well before: the client's own first retry would sleep 3 s.
PROMPT = 2.5


def make_alert(
    *,
    status: str = "firing",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    fingerprint: str = "5e8a2c0f91b3d4a7",
    starts_at: datetime = STARTS,
) -> Alert:
    return Alert(
        fingerprint=fingerprint,
        status=status,
        labels=dict(
            labels
            if labels is not None
            else {
                "alertname": "HighGPUCost",
                "severity": "critical",
                "service": "llm-inference",
                "namespace": "ml-serving",
                "instance": "gpu-node-07:9400",
            }
        ),
        annotations=dict(
            annotations
            if annotations is not None
            else {
                "summary": "llm-inference costs more than $50/hour",
                "runbook_url": "https://runbooks.example.com/gpu/high-cost",
                "dashboard_url": "https://grafana.example.com/d/gpu-costs",
            }
        ),
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=30) if status == "resolved" else None,
        generator_url="http://prometheus.monitoring.svc:9090/graph?g0.expr=service_cost_per_hour",
        external_url="http://alertmanager.monitoring.svc:9093",
        receiver="alert-router",
        group_key='{}:{alertname="HighGPUCost"}',
    )


def make_notification(
    alert: Alert,
    *,
    context: CostContext | None = None,
    reason: DedupReason = DedupReason.FIRST,
) -> Notification:
    if context is None:
        context = CostContext()
    return Notification(
        alert=alert, destination="oncall", route="expensive", reason=reason, context=context
    )


def resolved(alert: Alert) -> Alert:
    return make_alert(
        status="resolved",
        labels=alert.labels,
        annotations=alert.annotations,
        fingerprint=alert.fingerprint,
        starts_at=alert.starts_at,
    )


def send(notifier: PagerDutyNotifier, *notifications: Notification) -> Sequence[Ref | None]:
    return asyncio.run(notifier.notify(notifications))


def send_error(notifier: PagerDutyNotifier, notification: Notification) -> NotifyError:
    with pytest.raises(NotifyError) as caught:
        send(notifier, notification)
    return caught.value


def write_key(directory: Path, key: str) -> None:
    path = directory / SECRET_NAME
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(key + "\n", encoding="utf-8")
    # Move the mtime on explicitly: a rewrite within one clock tick of a coarse file system
    # keeps it, and keys of equal length keep the size, so the store would not notice.
    stamp = max(path.stat().st_mtime_ns, before + 1_000_000_000)
    os.utime(path, ns=(stamp, stamp))


@pytest.fixture
def secrets(tmp_path: Path) -> SecretStore:
    write_key(tmp_path, ROUTING_KEY)
    return SecretStore(tmp_path, environ={})


# Loading the system's CAs takes ~50 ms; one context serves every notifier of the run.
SSL_CONTEXT = ssl.create_default_context()


def make_notifier(
    url: str, secrets: SecretStore, *, default_severity: str = "warning", timeout: float = 2.0
) -> PagerDutyNotifier:
    return PagerDutyNotifier(
        "oncall",
        secrets.source(SECRET_NAME),
        events_url=url,
        default_severity=default_severity,
        timeout=timeout,
        ssl_context=SSL_CONTEXT,
    )


@pytest.fixture
def notifier(fake_pagerduty: FakePagerDuty, secrets: SecretStore) -> Iterator[PagerDutyNotifier]:
    pager = make_notifier(fake_pagerduty.url, secrets)
    yield pager
    pager.close()


def only_event(fake: FakePagerDuty) -> dict[str, object]:
    events = fake.events
    assert len(events) == 1, events
    event: dict[str, object] = events[0]
    return event


def payload_of(fake: FakePagerDuty) -> dict[str, object]:
    payload = only_event(fake)["payload"]
    assert isinstance(payload, dict)
    return payload


def details_of(fake: FakePagerDuty) -> dict[str, object]:
    details = payload_of(fake)["custom_details"]
    assert isinstance(details, dict)
    return details


# -- pairing and dedup keys


def test_trigger_then_resolve_share_the_dedup_key(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
) -> None:
    alert = make_alert()

    fired = send(notifier, make_notification(alert))
    cleared = send(notifier, make_notification(resolved(alert), reason=DedupReason.RESOLVED))

    key = dedup_key(alert)
    assert fired == [{"dedup_key": key}]
    assert cleared == [{"dedup_key": key}]
    incident = fake_pagerduty.incident(key)
    assert incident is not None
    assert incident.actions == ["trigger", "resolve"]
    assert incident.status == "resolved"
    assert fake_pagerduty.dropped_events == []
    resolve_event = fake_pagerduty.events[1]
    # PagerDuty needs no payload to resolve; the routing key must be the trigger's.
    assert resolve_event == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": key,
    }


def test_dedup_key_is_stable_across_restarts(
    fake_pagerduty: FakePagerDuty,
    secrets: SecretStore,
) -> None:
    first = make_notifier(fake_pagerduty.url, secrets)
    send(first, make_notification(make_alert()))
    first.close()
    # A new process (or the other replica) builds the same alert from the next webhook.
    second = make_notifier(fake_pagerduty.url, secrets)
    send(second, make_notification(resolved(make_alert()), reason=DedupReason.RESOLVED))
    second.close()

    keys = {event["dedup_key"] for event in fake_pagerduty.events}
    assert keys == {"5e8a2c0f91b3d4a7-1772368215"}
    assert len(fake_pagerduty.incidents) == 1
    assert fake_pagerduty.incidents[0].status == "resolved"


def test_dedup_key_is_one_per_episode() -> None:
    first = make_alert()
    again = make_alert(starts_at=STARTS + timedelta(hours=3))
    assert dedup_key(first) == dedup_key(make_alert())
    assert dedup_key(first) != dedup_key(again)
    assert dedup_key(first) != dedup_key(make_alert(fingerprint="0000000000000001"))
    # PagerDuty: dedup_key at most 255 characters.
    assert len(dedup_key(make_alert(fingerprint="f" * 400))) <= 255


# -- the event


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("critical", "critical"),
        ("error", "error"),
        ("warning", "warning"),
        ("info", "info"),
        ("CRITICAL", "critical"),  # case is not significant
        (" warning ", "warning"),  # nor surrounding space
        ("page", "critical"),  # common aliases
        ("warn", "warning"),
        ("high", "error"),  # unknown: the configured default
        ("", "error"),  # empty: the default
        (None, "error"),  # no severity label: the default
    ],
)
def test_severity_from_the_severity_label(
    fake_pagerduty: FakePagerDuty,
    secrets: SecretStore,
    label: str | None,
    expected: str,
) -> None:
    labels = {"alertname": "IdleGPU", "node": "gpu-node-03"}
    if label is not None:
        labels["severity"] = label
    pager = make_notifier(fake_pagerduty.url, secrets, default_severity="error")
    send(pager, make_notification(make_alert(labels=labels)))
    pager.close()

    assert payload_of(fake_pagerduty)["severity"] == expected


def test_default_severity_must_be_a_pagerduty_severity(secrets: SecretStore) -> None:
    with pytest.raises(ValueError, match="default_severity"):
        make_notifier("https://events.pagerduty.com/v2/enqueue", secrets, default_severity="high")


def test_events_url_must_be_http(secrets: SecretStore) -> None:
    with pytest.raises(ValueError, match="events_url"):
        make_notifier("events.pagerduty.com/v2/enqueue", secrets)


def test_summary_has_name_cost_and_summary_within_1024_characters(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
) -> None:
    context = CostContext(
        values=(
            ContextValue("budget_used", "Budget used", 92.4, Unit.PERCENT),
            ContextValue("cost_per_hour", "Cost per hour", 61.5, Unit.USD_PER_HOUR),
        )
    )
    long_text = "The service spends far beyond its budget. " * 100
    alert = make_alert(annotations={"summary": long_text})

    send(notifier, make_notification(alert, context=context))

    summary = payload_of(fake_pagerduty)["summary"]
    assert isinstance(summary, str)
    assert len(summary) == MAX_SUMMARY_CHARS
    # The key cost figure (the $/h one) comes first, so truncation never removes it.
    assert summary.startswith("HighGPUCost [Cost per hour $61.50/h]: The service spends")
    assert summary.endswith("…")


def test_summary_without_annotations_is_the_alert_name(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
) -> None:
    send(notifier, make_notification(make_alert(annotations={})))
    assert payload_of(fake_pagerduty)["summary"] == "HighGPUCost"


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        # every field from its first label
        (
            {
                "alertname": "LowGPUUtilization",
                "instance": "10.0.3.7:9400",
                "Hostname": "gpu-node-07",
                "node": "node-7",
                "service": "trainer",
                "app": "trainer-app",
                "namespace": "ml",
                "kubernetes_namespace": "ml-k8s",
                "team": "research",
            },
            ("10.0.3.7:9400", "trainer", "ml", "LowGPUUtilization"),
        ),
        # DCGM's Hostname label, app as component, kubernetes_namespace as group
        (
            {
                "alertname": "IdleGPU",
                "Hostname": "gpu-node-07",
                "app": "notebook",
                "kubernetes_namespace": "jupyter",
            },
            ("gpu-node-07", "notebook", "jupyter", "IdleGPU"),
        ),
        # node, then the team as group
        (
            {"alertname": "IdleGPU", "node": "node-9", "team": "platform"},
            ("node-9", None, "platform", "IdleGPU"),
        ),
        # a service alone is both source and component
        (
            {"alertname": "HighCostPerJob", "service": "batch"},
            ("batch", "batch", None, "HighCostPerJob"),
        ),
        # nothing to go on: the router names itself as source
        ({"alertname": "BudgetThresholdExceeded"}, ("alert-router", None, None, None)),
    ],
)
def test_source_component_group_class_from_labels(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
    labels: dict[str, str],
    expected: tuple[str, str | None, str | None, str | None],
) -> None:
    send(notifier, make_notification(make_alert(labels=labels)))

    payload = payload_of(fake_pagerduty)
    source, component, group, klass = expected
    assert payload["source"] == source
    assert payload.get("component") == component
    assert payload.get("group") == group
    assert payload["class"] == (klass or labels["alertname"])
    assert payload["timestamp"] == "2026-03-01T12:30:15.250Z"


def test_cost_context_in_custom_details(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
) -> None:
    context = CostContext(
        values=(
            ContextValue("cost_per_hour", "Cost per hour", 61.5, Unit.USD_PER_HOUR),
            ContextValue("monthly_projection", "Monthly projection", 44280.0, Unit.USD),
            ContextValue("budget_used", "Budget used", 92.0, Unit.PERCENT),
            ContextValue("gpu_utilization", "GPU utilization", float("nan"), Unit.PERCENT),
        )
    )
    alert = make_alert()

    send(notifier, make_notification(alert, context=context, reason=DedupReason.REPEAT))

    details = details_of(fake_pagerduty)
    assert details["cost_context"] == {
        "Cost per hour": "$61.50/h",
        "Monthly projection": "$44,280",
        "Budget used": "92 %",
        "GPU utilization": "n/a",
    }
    # Raw numbers too, for PagerDuty event rules; JSON has no NaN, so it is null.
    assert details["cost_values"] == {
        "cost_per_hour": 61.5,
        "monthly_projection": 44280.0,
        "budget_used": 92.0,
        "gpu_utilization": None,
    }
    assert details["labels"] == dict(alert.labels)
    assert details["annotations"] == dict(alert.annotations)
    assert details["notification_reason"] == "repeat_interval_elapsed"
    assert details["route"] == "expensive"
    assert "cost_context_unavailable" not in details


def test_unavailable_cost_context_is_explained(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
) -> None:
    context = CostContext(
        values=(ContextValue("cost_per_hour", "Cost per hour", 61.5, Unit.USD_PER_HOUR),),
        unavailable=(("budget_used", "Prometheus timed out after 2s"),),
    )

    send(notifier, make_notification(make_alert(), context=context))

    details = details_of(fake_pagerduty)
    assert details["cost_context_unavailable"] == {"budget_used": "Prometheus timed out after 2s"}


def test_links_client_and_client_url(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
) -> None:
    send(notifier, make_notification(make_alert()))

    event = only_event(fake_pagerduty)
    assert event["links"] == [
        {
            "href": "http://prometheus.monitoring.svc:9090/graph?g0.expr=service_cost_per_hour",
            "text": "Prometheus graph",
        },
        {"href": "https://runbooks.example.com/gpu/high-cost", "text": "Runbook"},
        {"href": "https://grafana.example.com/d/gpu-costs", "text": "Dashboard"},
    ]
    assert event["client"] == "alert-router"
    assert event["client_url"] == "http://alertmanager.monitoring.svc:9093"


def test_annotation_that_is_not_a_url_is_no_link(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
) -> None:
    alert = make_alert(annotations={"summary": "s", "runbook_url": "see the wiki"})
    send(notifier, make_notification(alert))

    links = only_event(fake_pagerduty)["links"]
    assert isinstance(links, list)
    assert [link["text"] for link in links] == ["Prometheus graph"]


def test_huge_annotation_is_shrunk_below_512_kb_and_accepted(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
) -> None:
    annotations = {
        "summary": "GPU cost is high",
        "description": "x" * 600_000,
        "runbook_url": "https://runbooks.example.com/gpu/high-cost",
    }
    alert = make_alert(annotations=annotations)
    context = CostContext(
        values=(ContextValue("cost_per_hour", "Cost per hour", 61.5, Unit.USD_PER_HOUR),)
    )

    send(notifier, make_notification(alert, context=context))

    request = fake_pagerduty.requests[0]
    assert request.status == 202
    assert len(request.body) <= MAX_EVENT_BYTES
    details = details_of(fake_pagerduty)
    annotations_sent = details["annotations"]
    assert isinstance(annotations_sent, dict)
    assert annotations_sent["summary"] == "GPU cost is high"
    assert len(annotations_sent["description"]) < 20_000
    assert annotations_sent["description"].endswith("…")
    assert "truncated" in details
    # What matters most survives: the labels, the cost, the links.
    assert details["labels"] == dict(alert.labels)
    assert details["cost_context"] == {"Cost per hour": "$61.50/h"}
    assert "links" in only_event(fake_pagerduty)


def test_thousands_of_labels_are_dropped_to_fit(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
) -> None:
    labels = {f"label_{i:05d}": "v" * 200 for i in range(3000)}
    labels.update({"alertname": "HighGPUCost", "instance": "i" * 700_000})
    alert = make_alert(labels=labels, annotations={"summary": "GPU cost is high"})

    send(notifier, make_notification(alert))

    request = fake_pagerduty.requests[0]
    assert request.status == 202
    assert len(request.body) <= MAX_EVENT_BYTES
    payload = payload_of(fake_pagerduty)
    assert len(str(payload["source"])) <= 1024
    details = details_of(fake_pagerduty)
    assert "labels" not in details
    assert details["annotations"] == {"summary": "GPU cost is high"}


def test_render_leaves_out_the_routing_key(tmp_path: Path) -> None:
    # No secret at all: rendering (dry-run) must not need it.
    store = SecretStore(tmp_path, environ={})
    pager = make_notifier("https://events.pagerduty.com/v2/enqueue", store)
    alert = make_alert()

    rendered = pager.render(
        [make_notification(alert), make_notification(resolved(alert), reason=DedupReason.RESOLVED)]
    )
    pager.close()

    assert [event["routing_key"] for event in rendered] == ["****", "****"]
    assert [event["event_action"] for event in rendered] == ["trigger", "resolve"]
    assert rendered[0]["payload"]["summary"].startswith("HighGPUCost")
    assert ROUTING_KEY not in json.dumps(rendered)


# -- PagerDuty's answers


def test_invalid_event_is_permanent_with_pagerdutys_errors(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
) -> None:
    fake_pagerduty.fail(
        400,
        body={
            "status": "invalid event",
            "message": "Event object is invalid",
            "errors": ["'payload.severity' is missing or blank", "'payload.source' is missing"],
        },
    )

    error = send_error(notifier, make_notification(make_alert()))

    assert error.recoverable is False
    assert error.retry_after is None
    assert "400" in str(error)
    assert "Event object is invalid" in str(error)
    assert "'payload.severity' is missing or blank" in str(error)
    assert "'payload.source' is missing" in str(error)


def test_routing_key_of_wrong_length_is_permanent(
    fake_pagerduty: FakePagerDuty,
    secrets: SecretStore,
) -> None:
    short_key = "shortkey-not-32"
    write_key(secrets.directory, short_key)
    pager = make_notifier(fake_pagerduty.url, secrets)

    error = send_error(pager, make_notification(make_alert()))
    pager.close()

    assert error.recoverable is False
    assert "Length of 'routing_key' is incorrect (should be 32 characters)" in str(error)
    assert short_key not in str(error)
    assert fake_pagerduty.incidents == []


@pytest.mark.parametrize(
    ("answer", "retry_after"),
    [
        (Answer(429), None),  # PagerDuty usually sends no Retry-After
        (Answer(429, headers={"Retry-After": "7"}), 7.0),  # but honour it when it does
        (Answer(503, headers={"Retry-After": "2.5"}), 2.5),
    ],
)
def test_throttling_is_recoverable_and_honours_retry_after(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
    answer: Answer,
    retry_after: float | None,
) -> None:
    fake_pagerduty.script(answer)

    error = send_error(notifier, make_notification(make_alert()))

    assert error.recoverable is True
    assert error.retry_after == retry_after
    assert len(fake_pagerduty.requests) == 1


def test_retry_after_as_http_date(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    fake_pagerduty.fail(429, headers={"Retry-After": when})

    error = send_error(notifier, make_notification(make_alert()))

    assert error.retry_after is not None
    assert 25 <= error.retry_after <= 31


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_server_errors_are_recoverable_and_not_retried_by_the_client(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
    status: int,
) -> None:
    fake_pagerduty.fail(status, times=5)

    started = time.monotonic()
    error = send_error(notifier, make_notification(make_alert()))
    elapsed = time.monotonic() - started

    assert error.recoverable is True
    assert f"HTTP {status}" in str(error)
    # No hidden retries: one notify, one request, no sleeping.
    assert len(fake_pagerduty.requests) == 1
    assert elapsed < PROMPT


@pytest.mark.parametrize(
    ("answer", "text"),
    [
        (Answer(401, body={"status": "unauthorized", "message": "Unauthorized"}), "401"),
        (Answer(404, body={"status": "not found", "message": "Not Found"}), "404"),
        (Answer(413, body="Request Entity Too Large"), "413"),
        (Answer(301, body="", headers={"Location": "https://example.com/"}), "redirect"),
    ],
)
def test_other_answers_are_permanent(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
    answer: Answer,
    text: str,
) -> None:
    fake_pagerduty.script(answer)

    error = send_error(notifier, make_notification(make_alert()))

    assert error.recoverable is False
    assert text in str(error)
    assert len(fake_pagerduty.requests) == 1


def test_connection_refused_is_recoverable_and_prompt(secrets: SecretStore) -> None:
    pager = make_notifier(f"http://127.0.0.1:{free_port()}/v2/enqueue", secrets)

    started = time.monotonic()
    error = send_error(pager, make_notification(make_alert()))
    elapsed = time.monotonic() - started
    pager.close()

    assert error.recoverable is True
    assert "cannot reach PagerDuty" in str(error)
    assert "ConnectError" in str(error)
    assert elapsed < PROMPT


def test_dropped_connection_is_recoverable_and_not_retried(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
) -> None:
    fake_pagerduty.drop(times=3)

    started = time.monotonic()
    error = send_error(notifier, make_notification(make_alert()))
    elapsed = time.monotonic() - started

    assert error.recoverable is True
    assert len(fake_pagerduty.requests) == 1
    assert elapsed < PROMPT


def test_timeout_is_recoverable(
    fake_pagerduty: FakePagerDuty,
    secrets: SecretStore,
) -> None:
    fake_pagerduty.script(Answer(delay=1.0, process=True))
    pager = make_notifier(fake_pagerduty.url, secrets, timeout=0.2)

    error = send_error(pager, make_notification(make_alert()))
    pager.close()

    assert error.recoverable is True
    assert "Timeout" in str(error)


def test_delivered_after_a_failure_when_the_pipeline_tries_again(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
) -> None:
    fake_pagerduty.fail(502)
    notification = make_notification(make_alert())

    assert send_error(notifier, notification).recoverable
    assert send(notifier, notification) == [{"dedup_key": dedup_key(notification.alert)}]
    assert [r.status for r in fake_pagerduty.requests] == [502, 202]


# -- secrets


def test_rotated_routing_key_is_used_from_the_next_event(
    notifier: PagerDutyNotifier,
    fake_pagerduty: FakePagerDuty,
    secrets: SecretStore,
) -> None:
    send(notifier, make_notification(make_alert(fingerprint="aaaaaaaaaaaaaaaa")))
    write_key(secrets.directory, OTHER_KEY)
    send(notifier, make_notification(make_alert(fingerprint="bbbbbbbbbbbbbbbb")))

    assert [r.routing_key for r in fake_pagerduty.requests] == [ROUTING_KEY, OTHER_KEY]


def test_missing_secret_is_recoverable_and_named(
    fake_pagerduty: FakePagerDuty,
    tmp_path: Path,
) -> None:
    pager = make_notifier(fake_pagerduty.url, SecretStore(tmp_path, environ={}))

    error = send_error(pager, make_notification(make_alert()))
    pager.close()

    assert error.recoverable is True
    assert SECRET_NAME in str(error)
    assert fake_pagerduty.requests == []


# Every way a send can fail; the routing key must show up in none of them.
LEAK_CASES = {
    "invalid event": Answer(
        400, body={"status": "invalid event", "message": "Event object is invalid", "errors": []}
    ),
    # A vendor (or proxy) that echoes the key back: redaction is the safety net.
    "key echoed": Answer(
        400,
        body={
            "status": "invalid event",
            "message": "Event object is invalid",
            "errors": [f"routing_key {ROUTING_KEY} is not enabled"],
        },
    ),
    "key echoed as text": Answer(502, body=f"<html>upstream rejected {ROUTING_KEY}</html>"),
    "throttled": Answer(429, headers={"Retry-After": "1"}),
    "unauthorized": Answer(401, body={"status": "unauthorized"}),
    "redirect": Answer(302, body="", headers={"Location": "https://example.com/"}),
    "server error": Answer(500),
    "bad gateway": Answer(502),
    "unavailable": Answer(503),
    "dropped": Answer(drop=True),
    "timeout": Answer(delay=1.0, process=True),
}


@pytest.mark.parametrize("case", [*LEAK_CASES, "refused", "wrong key length"])
def test_routing_key_leaks_nowhere(
    fake_pagerduty: FakePagerDuty,
    secrets: SecretStore,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    key = ROUTING_KEY
    url = fake_pagerduty.url
    if case == "refused":
        url = f"http://127.0.0.1:{free_port()}/v2/enqueue"
    elif case == "wrong key length":
        key = "ThisKeyIsTooShortForPD"
        write_key(secrets.directory, key)
    else:
        fake_pagerduty.script(LEAK_CASES[case])
    pager = make_notifier(url, secrets, timeout=0.3)

    error = send_error(pager, make_notification(make_alert()))
    pager.close()

    texts = [str(error), repr(error)]
    chained: BaseException | None = error
    while chained is not None:
        texts += [str(chained), repr(chained)]
        chained = chained.__cause__ or chained.__context__
    texts += [record.getMessage() for record in caplog.records]
    texts += [record.exc_text or "" for record in caplog.records]
    texts.append(caplog.text)
    assert caplog.records, "the client logs its requests at DEBUG; expected some records"
    for text in texts:
        assert key not in text


def test_successful_sends_log_no_routing_key(
    notifier: PagerDutyNotifier,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    alert = make_alert(annotations={"summary": "s", "description": "d" * 600_000})

    send(notifier, make_notification(alert))
    send(notifier, make_notification(resolved(alert), reason=DedupReason.RESOLVED))

    assert any("shrunk" in record.getMessage() for record in caplog.records)
    assert ROUTING_KEY not in caplog.text


# -- the fake itself speaks PagerDuty


def post(fake: FakePagerDuty, body: object) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    with httpx.Client(verify=SSL_CONTEXT) as client:
        return client.post(fake.url, content=content, headers={"Content-Type": "application/json"})


def trigger(**overrides: object) -> dict[str, object]:
    event: dict[str, object] = {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": "k1",
        "payload": {"summary": "s", "source": "host", "severity": "critical"},
    }
    event.update(overrides)
    return event


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (trigger(routing_key="abc"), "Length of 'routing_key' is incorrect"),
        (trigger(routing_key="R0ut1ngKey0f32Characters-orTests"), "non-alphanumeric"),
        (trigger(event_action="open"), "'event_action' is invalid"),
        (trigger(payload={"source": "h", "severity": "info"}), "'payload.summary' is missing"),
        (
            trigger(payload={"summary": "s" * 1025, "source": "h", "severity": "info"}),
            "'summary' is too long (maximum is 1024 characters)",
        ),
        (trigger(payload={"summary": "s", "severity": "info"}), "'payload.source' is missing"),
        (trigger(payload={"summary": "s", "source": "h"}), "'payload.severity' is missing"),
        (
            trigger(payload={"summary": "s", "source": "h", "severity": "high"}),
            "'payload.severity' is invalid",
        ),
        (trigger(dedup_key="k" * 256), "'dedup_key' is too long"),
        ({"routing_key": ROUTING_KEY, "event_action": "resolve"}, "'dedup_key' is missing"),
    ],
)
def test_fake_rejects_what_pagerduty_rejects(
    fake_pagerduty: FakePagerDuty,
    event: dict[str, object],
    error: str,
) -> None:
    response = post(fake_pagerduty, event)

    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "invalid event"
    assert body["message"] == "Event object is invalid"
    assert any(error in text for text in body["errors"]), body


def test_fake_rejects_bad_json_and_oversized_events(
    fake_pagerduty: FakePagerDuty,
) -> None:
    assert post(fake_pagerduty, b"{not json").status_code == 400
    big = trigger(payload={"summary": "s", "source": "h", "severity": "info", "x": "y" * 600_000})
    response = post(fake_pagerduty, big)
    assert response.status_code == 400
    assert "maximum" in response.json()["errors"][0]


def test_fake_models_pagerduty_alerts(fake_pagerduty: FakePagerDuty) -> None:
    # Without a dedup_key PagerDuty makes one up and returns it.
    response = post(fake_pagerduty, trigger(dedup_key=None))
    assert response.status_code == 202
    assert response.json()["status"] == "success"
    assert response.json()["message"] == "Event processed"
    assert len(response.json()["dedup_key"]) == 32
    # Resolve from another routing key, or of an unknown alert: accepted but dropped.
    assert post(fake_pagerduty, trigger()).status_code == 202
    other = {"routing_key": OTHER_KEY, "event_action": "resolve", "dedup_key": "k1"}
    unknown = {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "nope"}
    assert post(fake_pagerduty, other).status_code == 202
    assert post(fake_pagerduty, unknown).status_code == 202
    assert len(fake_pagerduty.dropped_events) == 2
    incident = fake_pagerduty.incident("k1")
    assert incident is not None
    assert incident.status == "triggered"
    # Acknowledge, resolve, then a new trigger opens a new alert with the same key.
    for action in ("acknowledge", "resolve"):
        event = {"routing_key": ROUTING_KEY, "event_action": action, "dedup_key": "k1"}
        assert post(fake_pagerduty, event).status_code == 202
    assert incident.actions == ["trigger", "acknowledge", "resolve"]
    assert post(fake_pagerduty, trigger()).status_code == 202
    latest = fake_pagerduty.incident("k1")
    assert latest is not None
    assert latest is not incident
    assert latest.status == "triggered"


def test_flaky_fake_fails_some_and_everything_lands_on_retry(
    flaky_pagerduty: FakePagerDuty,
    secrets: SecretStore,
) -> None:
    pager = make_notifier(flaky_pagerduty.url, secrets)
    failures = 0
    for i in range(30):
        notification = make_notification(make_alert(fingerprint=f"{i:016x}"))
        for _attempt in range(20):
            try:
                send(pager, notification)
                break
            except NotifyError as error:
                assert error.recoverable
                failures += 1
    pager.close()

    assert failures > 0
    assert len(flaky_pagerduty.incidents) == 30
    requests = flaky_pagerduty.requests
    assert [r.received_at for r in requests] == sorted(r.received_at for r in requests)
