"""The history's settings: retention as a duration, and the bound on episodes kept."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from receiver.config.settings import Settings


def test_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALERT_ROUTER_HISTORY_RETENTION", raising=False)
    monkeypatch.delenv("ALERT_ROUTER_HISTORY_MAX_EPISODES", raising=False)
    settings = Settings()
    assert settings.history_retention == 7 * 86400.0
    assert settings.history_max_episodes == 100_000


@pytest.mark.parametrize(
    ("text", "seconds"), [("7d", 604800.0), ("36h", 129600.0), ("1h30m", 5400.0)]
)
def test_the_retention_is_a_duration(
    monkeypatch: pytest.MonkeyPatch, text: str, seconds: float
) -> None:
    monkeypatch.setenv("ALERT_ROUTER_HISTORY_RETENTION", text)
    assert Settings().history_retention == seconds


def test_the_episode_bound_can_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERT_ROUTER_HISTORY_MAX_EPISODES", "5000")
    assert Settings().history_max_episodes == 5000


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ALERT_ROUTER_HISTORY_RETENTION", "a week", "is not a duration"),
        ("ALERT_ROUTER_HISTORY_RETENTION", "0s", "greater than 0"),
        ("ALERT_ROUTER_HISTORY_MAX_EPISODES", "0", "greater than 0"),
        ("ALERT_ROUTER_HISTORY_MAX_EPISODES", "many", "valid integer"),
    ],
)
def test_wrong_values_are_refused_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        Settings()
