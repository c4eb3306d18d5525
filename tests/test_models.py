"""The alert the pipeline carries: its source, and its stored form."""

from __future__ import annotations

from datetime import UTC, datetime

from receiver.models import SOURCES, Alert, GrafanaFields, episode_key

STARTS = datetime(2026, 12, 1, 9, 30, 15, 123000, tzinfo=UTC)


def alert(**fields: object) -> Alert:
    return Alert("2987690b8e66b4f0", "firing", {"alertname": "HighGPUCost"}, {}, STARTS, **fields)  # type: ignore[arg-type]


def test_an_alert_without_grafana_fields_is_from_alertmanager() -> None:
    plain = alert()
    assert plain.source == "alertmanager"
    # Stored as before: rows written by older versions read back the same.
    assert "grafana" not in plain.to_json()
    assert Alert.from_json(plain.to_json()) == plain


def test_grafana_fields_survive_the_stored_form() -> None:
    grafana = GrafanaFields(
        values={"A": 61.5, "B": 1.0},
        value_string="[ var='A' labels={service=x} value=61.5 ]",
        dashboard_url="https://grafana.example/d/abc",
        panel_url="https://grafana.example/d/abc?viewPanel=2",
        silence_url="https://grafana.example/alerting/silence/new?matchers=alertname%3DX",
        image_url="https://grafana.example/render/x.png",
        org_id=1,
    )
    from_grafana = alert(grafana=grafana)
    assert from_grafana.source == "grafana"
    assert from_grafana.source in SOURCES
    assert Alert.from_json(from_grafana.to_json()) == from_grafana


def test_the_episode_key_is_fingerprint_and_start() -> None:
    assert alert().episode == episode_key("2987690b8e66b4f0", STARTS)
    assert alert().episode == "2987690b8e66b4f0@2026-12-01T09:30:15.123Z"


def test_the_start_text_is_format_times_however_the_alert_was_read() -> None:
    made = alert()
    assert made.started == "2026-12-01T09:30:15.123Z"
    stored = made.to_json()
    assert stored["startsAt"] == made.started
    assert Alert.from_json(stored).started == made.started
    # A start written in another form (an offset, microseconds) is read as the time it
    # names, and its text made from that time, not taken as written.
    other = dict(stored, startsAt="2026-12-01T10:30:15.123456+01:00")
    loaded = Alert.from_json(other)
    assert loaded.starts_at == STARTS.replace(microsecond=123456)
    assert loaded.started == "2026-12-01T09:30:15.123Z"
    assert loaded.episode == "2987690b8e66b4f0@2026-12-01T09:30:15.123Z"
    # The text is not part of the alert's equality: an alert whose text was made compares
    # equal to one whose text was not.
    fresh = alert()
    assert fresh == Alert.from_json(stored)
