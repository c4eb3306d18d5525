"""The one duration parser and its two formatters (receiver.config.durations)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.config.durations import format_duration, format_elapsed, parse_duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.5, "0.5s"),  # a timeout of half a second, as the rules file may write it
        (2.5, "2.5s"),
        (30, "30s"),
        (60, "1m"),
        (62.5, "1m2.5s"),
        (3600, "1h"),
        (5400, "1h30m"),
        (86400, "24h"),  # hours are the largest unit: "Silence 24h", not "1d"
        (93784, "26h3m4s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


@given(st.integers(min_value=0, max_value=10**8))
def test_format_duration_reads_back(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_format_duration_refuses_what_is_no_duration(bad: float) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        format_duration(bad)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "0s"),  # clocks disagree: never a negative duration
        (0, "0s"),
        (45.9, "45s"),
        (4800, "1h 20m"),
        (3600, "1h"),
        (93784, "1d 2h"),  # the two largest units only
        (86400 * 3 + 59, "3d 59s"),
    ],
)
def test_format_elapsed(seconds: float, text: str) -> None:
    assert format_elapsed(seconds) == text


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("4h", 14400), ("1d", 86400), ("1h30m", 5400), ("250ms", 0.25)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5", "m5", "5 m", "1h 30m", "-5m", "5y"])
def test_parse_duration_names_the_accepted_form(bad: str) -> None:
    with pytest.raises(ValueError, match=r"use e\.g\. 30s, 5m, 4h, 1d or 1h30m"):
        parse_duration(bad)
