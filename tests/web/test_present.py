"""How the page says times: "ago" in the words `explain` uses, UTC, RFC 3339 for the API."""

from __future__ import annotations

from receiver.web.present import ago, rfc3339, utc

NOW = 1_796_179_638.0


def test_ago_says_how_long_before_now_and_a_time_ahead_as_in() -> None:
    assert ago(None, NOW) == ""
    assert ago(NOW - 2, NOW) == "just now"
    assert ago(NOW - 200, NOW) == "3m 20s ago"
    assert ago(NOW - 7500, NOW) == "2h 5m ago"
    assert ago(NOW - 4 * 86400 - 3600, NOW) == "4d 1h ago"
    assert ago(NOW + 40, NOW) == "in 40s"


def test_times_are_utc_for_people_and_rfc3339_for_the_api() -> None:
    assert utc(NOW) == "2026-12-02 02:47:18 UTC"
    assert utc(None) == ""
    assert rfc3339(NOW) == "2026-12-02T02:47:18.000Z"
    assert rfc3339(None) is None
