"""The events sent to PagerDuty: dedup keys, fields from labels, cost context, size."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path

import pytest

from receiver.config.secrets import SecretStore
from receiver.models import ContextValue, CostContext, DedupReason, Unit
from receiver.notify.pagerduty.events import (
    MAX_DEDUP_KEY_CHARS,
    MAX_EVENT_BYTES,
    MAX_SUMMARY_CHARS,
    acknowledge_event,
    clip,
    event_size,
    resolve_event,
    trigger_event,
)
from receiver.notify.pagerduty.notifier import PagerDutyNotifier, dedup_key
from tests.fakes.pagerduty import ROUTING_KEY, FakePagerDuty
from tests.notify.pagerduty.support import (
    STARTS,
    close,
    details_of,
    make_alert,
    make_notification,
    make_notifier,
    only_event,
    payload_of,
    resolved,
    send,
)

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
    close(first)
    # A new process (or the other replica) builds the same alert from the next webhook.
    second = make_notifier(fake_pagerduty.url, secrets)
    send(second, make_notification(resolved(make_alert()), reason=DedupReason.RESOLVED))
    close(second)

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
    close(pager)

    assert payload_of(fake_pagerduty)["severity"] == expected


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
    close(pager)

    assert [event["routing_key"] for event in rendered] == ["****", "****"]
    assert [event["event_action"] for event in rendered] == ["trigger", "resolve"]
    assert rendered[0]["payload"]["summary"].startswith("HighGPUCost")
    assert ROUTING_KEY not in json.dumps(rendered)


# -- the builders, as pure functions


def test_trigger_that_fits_is_not_shrunk() -> None:
    fitted = trigger_event(make_notification(make_alert()), ROUTING_KEY, "warning")

    assert fitted.shrunk is False
    assert fitted.size == fitted.full_size == event_size(fitted.event)
    assert fitted.size <= MAX_EVENT_BYTES
    assert "truncated" not in fitted.event["payload"]["custom_details"]


def test_event_size_counts_the_encoded_bytes() -> None:
    # PagerDuty's limit is on bytes: a character outside ASCII is sent as two to four.
    assert event_size({"s": "é"}) == len('{"s":"é"}'.encode())
    assert event_size({"s": "€" * 10}) == len('{"s":""}') + 30


def test_multibyte_text_is_shrunk_by_its_bytes_not_its_characters() -> None:
    # 200,000 characters fit the limit as characters but not as UTF-8 bytes (600,000).
    alert = make_alert(annotations={"summary": "s", "description": "€" * 200_000})

    fitted = trigger_event(make_notification(alert), ROUTING_KEY, "warning")

    assert fitted.shrunk is True
    assert fitted.full_size > MAX_EVENT_BYTES
    assert fitted.size == event_size(fitted.event) <= MAX_EVENT_BYTES
    assert "truncated" in fitted.event["payload"]["custom_details"]


def test_resolve_and_acknowledge_carry_only_the_trigger_s_key() -> None:
    alert = make_alert()
    trigger = trigger_event(make_notification(alert), ROUTING_KEY, "warning").event

    for build, action in ((resolve_event, "resolve"), (acknowledge_event, "acknowledge")):
        # PagerDuty: resolve and acknowledge take routing_key, event_action and dedup_key.
        assert build(resolved(alert), ROUTING_KEY) == {
            "routing_key": ROUTING_KEY,
            "event_action": action,
            "dedup_key": trigger["dedup_key"],
        }


def test_dedup_key_over_255_characters_is_hashed_stably() -> None:
    # A key of exactly 255 characters is kept; one more is replaced by its SHA-256.
    fits = make_alert(fingerprint="f" * (MAX_DEDUP_KEY_CHARS - len("-1772368215")))
    assert dedup_key(fits) == fits.fingerprint + "-1772368215"
    long = make_alert(fingerprint="f" * 400)
    expected = hashlib.sha256(f"{'f' * 400}-1772368215".encode()).hexdigest()
    assert dedup_key(long) == expected
    assert dedup_key(make_alert(fingerprint="f" * 400)) == expected


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("abc", None, "abc"),  # no limit
        ("abc", 3, "abc"),  # exactly at the limit: kept
        ("abcd", 3, "ab…"),  # over: cut, the ellipsis counted in the limit
    ],
)
def test_clip(text: str, limit: int | None, expected: str) -> None:
    assert clip(text, limit) == expected
