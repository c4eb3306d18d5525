"""What the notifiers take from a Grafana alert: query values for people, links, silence."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from receiver.models import Alert, GrafanaFields
from receiver.notify.grafana import (
    format_query_value,
    grafana_links,
    query_numbers,
    query_values,
    silence_url,
)


def _alert(grafana: GrafanaFields | None) -> Alert:
    return Alert(
        fingerprint="fp",
        status="firing",
        labels={"alertname": "HighGPUCost"},
        annotations={},
        starts_at=datetime(2026, 3, 1, tzinfo=UTC),
        grafana=grafana,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (61.5, "61.5"),  # the example
        (61.50000000000001, "61.5"),  # float64 noise is not shown
        (0.1 + 0.2, "0.3"),  # 0.30000000000000004 to Python
        (92.0, "92"),  # a whole number has no decimals
        (100.0, "100"),  # trailing zeros go, the integer part stays
        (1234567.891, "1,234,568"),  # six significant digits, thousands separated
        (-42.125, "-42.125"),
        (0.001234567, "0.00123457"),
        (2.5e-05, "2.5e-05"),  # below 0.001: scientific, not 0.000025
        (1e20, "1e+20"),  # huge: scientific, not 21 digits
        (0.0, "0"),
        (-0.0, "0"),
        (math.nan, "NaN"),  # Prometheus's spellings of the non-finite
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
    ],
)
def test_query_values_are_formatted_for_people(value: float, expected: str) -> None:
    assert format_query_value(value) == expected


def test_an_alertmanager_alert_has_nothing_from_grafana() -> None:
    alert = _alert(None)

    assert query_values(alert) == []
    assert query_numbers(alert) == {}
    assert grafana_links(alert) == []
    assert silence_url(alert) is None


def test_grafana_values_links_and_silence() -> None:
    alert = _alert(
        GrafanaFields(
            values={"B": 0.1 + 0.2, "A": 61.5, "C": math.nan},
            dashboard_url="https://grafana.example/d/gpu",
            panel_url="",
            silence_url="https://grafana.example/alerting/silence/new?alertmanager=grafana",
        )
    )

    assert query_values(alert) == [("A", "61.5"), ("B", "0.3"), ("C", "NaN")]
    # JSON has no NaN: the raw numbers keep their precision, NaN becomes null.
    assert query_numbers(alert) == {"A": 61.5, "B": 0.1 + 0.2, "C": None}
    assert grafana_links(alert) == [("Dashboard", "https://grafana.example/d/gpu")]
    assert silence_url(alert) == (
        "https://grafana.example/alerting/silence/new?alertmanager=grafana"
    )
    assert silence_url(_alert(GrafanaFields())) is None
