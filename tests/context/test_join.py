"""The join of result series to an alert's labels: indexed, against its plain definition;
then against a real Prometheus' results."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.config.rules import Rules
from receiver.context.join import SeriesSet
from receiver.context.prometheus import Series
from receiver.models import CostContext
from tests.context.seed import (
    BUDGET,
    LIPSYNC,
    LOW_GPU,
    SERVICE_VALUES,
    WHISPER,
    custom_rules,
    enrich_once,
    make_alert,
    run,
)
from tests.fakes.prometheus import PrometheusServer

NAMES = ["service", "namespace", "node", "gpu"]
VALUES = ["a", "b", "c"]
labelsets = st.dictionaries(st.sampled_from(NAMES), st.sampled_from(VALUES), max_size=4)


def reference(
    series: list[Series], labels: Mapping[str, str], to_alert: Mapping[str, str]
) -> Series | None:
    """The definition: every series label equals the alert's; most labels wins, then the
    first in label order."""
    matching = [
        s for s in series if all(labels.get(to_alert.get(k, k)) == v for k, v in s.labels.items())
    ]
    if not matching:
        return None
    return min(matching, key=lambda s: (-len(s.labels), sorted(s.labels.items())))


@settings(max_examples=300, deadline=None)
@given(
    results=st.lists(labelsets, max_size=12),
    alert=st.dictionaries(st.sampled_from([*NAMES, "Hostname"]), st.sampled_from(VALUES)),
    join=st.booleans(),
)
def test_indexed_join_equals_the_definition(
    results: list[dict[str, str]], alert: dict[str, str], join: bool
) -> None:
    series = [Series(labels, ((0.0, float(i)),)) for i, labels in enumerate(results)]
    to_alert = {"node": "Hostname"} if join else {}
    found = SeriesSet(series).match(alert, to_alert)
    expected = reference(series, alert, to_alert)
    if expected is None:
        # No match: whether some series has only label names the alert carries.
        applies = any(all(to_alert.get(k, k) in alert for k in s.labels) for s in series)
        assert found is applies
    else:
        assert isinstance(found, Series)
        assert found.labels == expected.labels


def test_a_series_without_labels_matches_every_alert() -> None:
    total = Series({}, ((0.0, 5.0),))
    assert SeriesSet([total]).match({"service": "x"}, {}) is total


def test_no_match_says_whether_the_value_applies() -> None:
    per_gpu = SeriesSet([Series({"node": "n1", "gpu": "0"}, ((0.0, 1.0),))])
    # A GPU alert of another GPU: the value applies, but has no data for it.
    assert per_gpu.match({"Hostname": "n1", "gpu": "1"}, {"node": "Hostname"}) is True
    # A budget alert: no GPU labels, the value does not apply.
    assert per_gpu.match({"service": "s"}, {"node": "Hostname"}) is False


def test_more_labels_win_over_label_order() -> None:
    broad = Series({"service": "a"}, ((0.0, 1.0),))
    narrow = Series({"service": "a", "namespace": "z"}, ((0.0, 2.0),))
    found = SeriesSet([broad, narrow]).match({"service": "a", "namespace": "z"}, {})
    assert found is narrow


def test_join_on_shared_labels_gives_each_alert_its_series(
    seeded: float, prometheus: PrometheusServer, shipped: Rules
) -> None:
    whisper, lipsync, unknown = run(
        enrich_once(
            shipped,
            [
                make_alert(alertname="HighGPUCost", **WHISPER),
                make_alert(alertname="HighGPUCost", **LIPSYNC),
                make_alert(alertname="HighGPUCost", service="not-exported"),
            ],
            prometheus.url,
        )
    )
    assert whisper.get("cost_per_hour") == 61.5
    assert lipsync.get("cost_per_hour") == 12.25
    assert lipsync.get("jobs_per_hour") == pytest.approx(245)
    # The alert carries `service` but no series has its value: no data, said per value.
    assert unknown.values == ()
    assert dict(unknown.unavailable) == {name: "no data" for name in SERVICE_VALUES}


def test_join_maps_alert_label_to_result_label(
    seeded: float, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    rules = custom_rules(
        tmp_path,
        {
            "node_cost": {
                "query": "sum by (node) (gpu_cost_per_hour)",
                "unit": "usd_per_hour",
                "join": {"Hostname": "node"},
            },
        },
    )
    by_hostname, by_node, neither = run(
        enrich_once(
            rules,
            [
                make_alert(alertname="IdleGPU", Hostname="gpu-node-3"),
                # Mapped: the result's `node` compares with the alert's Hostname only.
                make_alert(alertname="IdleGPU", node="gpu-node-2"),
                make_alert(alertname="Other"),
            ],
            prometheus.url,
        )
    )
    assert by_hostname.get("node_cost") == 8.0
    assert by_hostname.values[0].title == "Node cost"  # from the name when no title
    assert by_node == CostContext()
    assert neither == CostContext()


def test_series_without_labels_and_scalars_apply_to_every_alert(
    seeded: float, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    rules = custom_rules(
        tmp_path,
        {
            "fleet": {
                "query": "sum(service_cost_per_hour"
                '{service=~"whisper-pyannote-stt|wav2lip-lipsync"})',
                "unit": "usd_per_hour",
            },
            "fleet_scalar": {
                "query": 'scalar(sum(service_cost_per_hour{service="wav2lip-lipsync"}))',
                "unit": "usd_per_hour",
            },
        },
    )
    contexts = run(enrich_once(rules, [BUDGET, LOW_GPU, make_alert(alertname="X")], prometheus.url))
    for context in contexts:
        assert context.numbers() == {"fleet": 73.75, "fleet_scalar": 12.25}


def test_most_specific_series_wins_when_several_match(
    seeded: float, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    # {service} and {service, namespace} both match the alert: the second, more specific.
    rules = custom_rules(
        tmp_path,
        {
            "cost": {
                "query": "sum by (service) (service_cost_per_hour)"
                " or sum by (service, namespace) (service_cost_per_hour * 2)",
                "unit": "usd_per_hour",
            }
        },
    )
    with_ns, without_ns = run(
        enrich_once(
            rules,
            [
                make_alert(alertname="A", **WHISPER),
                make_alert(alertname="A", service=WHISPER["service"]),
            ],
            prometheus.url,
        )
    )
    assert with_ns.get("cost") == 123.0
    assert without_ns.get("cost") == 61.5
