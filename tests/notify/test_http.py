"""retry_after_seconds: the one reading of a vendor's Retry-After (RFC 9110 10.2.3)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from receiver.notify.http import retry_after_seconds

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC).timestamp()


def clock() -> float:
    return NOW


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("30", 30.0),  # delay-seconds, as Slack sends it
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("-3", 0.0),  # never a wait into the past
        ("inf", None),
        ("nan", None),
        ("soon", None),
        # An HTTP date, as PagerDuty or a proxy may send it.
        ("Tue, 01 Dec 2026 12:00:45 GMT", 45.0),
        ("Tue, 01 Dec 2026 11:59:00 GMT", 0.0),  # already past
        ("Tuesday, 01-Dec-26 12:01:00 GMT", 60.0),  # RFC 850, obsolete but allowed
        ("Tue, 99 Dec 2026 12:00:00 GMT", None),
    ],
)
def test_retry_after_seconds(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value, clock=clock) == seconds


def test_retry_after_date_round_trip() -> None:
    later = datetime.fromtimestamp(NOW + 120, tz=UTC)
    assert retry_after_seconds(format_datetime(later, usegmt=True), clock=clock) == 120.0
