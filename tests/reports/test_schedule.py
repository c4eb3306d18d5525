"""When reports fire: cron in a time zone across DST changes, and what is due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from receiver.config.reports import ReportSpec, parse_cron
from receiver.reports.schedule import Slot, due, next_fire, previous_fire

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# (cron, zone, after, the next fire times in UTC)
NEXT = [
    # Weekdays at 09:00 Berlin: CET (+1) in March until the 29th, CEST (+2) from then on.
    (
        "0 9 * * 1-5",
        BERLIN,
        utc(2026, 3, 26, 12, 0),
        [utc(2026, 3, 27, 8, 0), utc(2026, 3, 30, 7, 0), utc(2026, 3, 31, 7, 0)],
    ),
    # 02:30 does not exist in Berlin on 29 March 2026: once, at 03:00 CEST (01:00 UTC).
    (
        "30 2 * * *",
        BERLIN,
        utc(2026, 3, 28, 12, 0),
        [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)],
    ),
    # 02:30 happens twice in Berlin on 25 October 2026: once, the first time (CEST).
    (
        "30 2 * * *",
        BERLIN,
        utc(2026, 10, 24, 12, 0),
        [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
    ),
    # Every 20 minutes of 02:xx on the spring-forward day: the gap fires once, at 03:00.
    (
        "*/20 2 * * *",
        BERLIN,
        utc(2026, 3, 28, 12, 0),
        [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 0)],
    ),
    # New York springs forward on 8 March 2026 (02:00 EST -> 03:00 EDT).
    (
        "30 2 * * *",
        NEW_YORK,
        utc(2026, 3, 7, 12, 0),
        [utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)],
    ),
    # ... and falls back on 1 November 2026 (01:30 happens twice; first EDT, -4).
    (
        "30 1 * * *",
        NEW_YORK,
        utc(2026, 10, 31, 12, 0),
        [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)],
    ),
    # 09:00 New York keeps its wall time across the change: 13:00 UTC, then 14:00.
    (
        "0 9 * * *",
        NEW_YORK,
        utc(2026, 10, 31, 14, 0),
        [utc(2026, 11, 1, 14, 0), utc(2026, 11, 2, 14, 0)],
    ),
    # Names and lists: Mondays and Fridays in January at 06:15 UTC.
    (
        "15 6 * jan mon,fri",
        ZoneInfo("UTC"),
        utc(2026, 1, 1, 0, 0),
        [utc(2026, 1, 2, 6, 15), utc(2026, 1, 5, 6, 15), utc(2026, 1, 9, 6, 15)],
    ),
    # Day of month and day of week both set: either matches (the 13th, or any Friday).
    (
        "0 12 13 * 5",
        ZoneInfo("UTC"),
        utc(2026, 2, 10, 0, 0),
        [utc(2026, 2, 13, 12, 0), utc(2026, 2, 20, 12, 0), utc(2026, 2, 27, 12, 0)],
    ),
]


@pytest.mark.parametrize(("cron", "zone", "after", "expected"), NEXT)
def test_next_fire_times(
    cron: str, zone: ZoneInfo, after: datetime, expected: list[datetime]
) -> None:
    parsed = parse_cron(cron)
    got = []
    at = after
    for _ in expected:
        found = next_fire(parsed, zone, at)
        assert found is not None
        got.append(found)
        at = found
    assert got == expected


@pytest.mark.parametrize(("cron", "zone", "after", "expected"), NEXT)
def test_previous_fire_is_the_inverse(
    cron: str, zone: ZoneInfo, after: datetime, expected: list[datetime]
) -> None:
    parsed = parse_cron(cron)
    for fire in expected:
        assert previous_fire(parsed, zone, fire) == fire
        before = previous_fire(parsed, zone, fire - timedelta(seconds=1))
        assert before is not None and before < fire
        assert next_fire(parsed, zone, before) == fire


def test_a_never_matching_day_is_refused() -> None:
    with pytest.raises(ValueError, match="never fires"):
        parse_cron("0 9 30 2 *")


SPEC = ReportSpec.model_validate(
    {"to": ["finops-bot"], "schedule": "0 9 * * *", "timezone": "Europe/Berlin", "window": "24h"}
)
SLOT = utc(2026, 3, 2, 8, 0)  # 09:00 CET


# (last slot sent, now, what is due)
DUE = [
    # Never sent, at the minute: due, on time.
    (None, SLOT + timedelta(seconds=5), Slot(SLOT, late=False)),
    # Sent already: nothing until the next day.
    (SLOT, SLOT + timedelta(minutes=1), None),
    (SLOT, SLOT + timedelta(hours=23), None),
    # Yesterday's was sent, the router was down at 09:00 and is back at 15:00: late.
    (SLOT - timedelta(days=1), SLOT + timedelta(hours=6), Slot(SLOT, late=True)),
    # Within the on-time margin: not late.
    (None, SLOT + timedelta(seconds=119), Slot(SLOT, late=False)),
]


@pytest.mark.parametrize(("last", "now", "expected"), DUE)
def test_due(last: datetime | None, now: datetime, expected: Slot | None) -> None:
    assert due(SPEC, last, now) == expected


def test_a_slot_missed_for_longer_than_the_window_is_skipped() -> None:
    weekly = SPEC.model_copy(update={"schedule": parse_cron("0 9 * * 1")})  # Mondays
    monday = SLOT  # 2 March 2026 is a Monday
    back = monday + timedelta(hours=24, seconds=1)
    assert due(weekly, monday - timedelta(days=7), back) is None
    assert due(weekly, monday - timedelta(days=7), back - timedelta(seconds=2)) == Slot(
        monday, late=True
    )


def test_only_the_latest_missed_slot_is_sent() -> None:
    # Down from before 09:00 on day 1 until 10:00 on day 3: day 3's slot is due (late),
    # day 1's and day 2's are never sent.
    now = SLOT + timedelta(days=2, hours=1)
    assert due(SPEC, SLOT - timedelta(days=1), now) == Slot(SLOT + timedelta(days=2), late=True)
