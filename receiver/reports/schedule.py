"""When a report fires: a cron expression read in its IANA time zone, DST included.

Pure functions of (cron, zone, instant); the store records which slot was sent, the
scheduler asks `due` what to send now.

Daylight saving time, as cronie handles fixed-time jobs:
- a wall time that does not exist (02:30 on a spring-forward day) fires once, at the first
  valid instant after it (03:00 local, the end of the gap);
- a wall time that happens twice (02:30 on a fall-back day) fires once, the first time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from receiver.config.reports import Cron, ReportSpec

# How far ahead or back to look for a matching day: a schedule such as "0 9 29 2 1" (Feb 29
# or a Monday) matches often, "0 9 29 2 *" once in 4 years; 8 years covers every case.
_SEARCH_DAYS = 8 * 366
# A slot sent this long after its time is still on time: the scheduler polls every few
# seconds and a replica may be busy; later than this, the report says it is late.
ON_TIME = 120.0


@dataclass(frozen=True, slots=True)
class Slot:
    """One scheduled time of a report (UTC) and whether it is being sent late."""

    at: datetime
    late: bool = False


def next_fire(cron: Cron, zone: ZoneInfo, after: datetime) -> datetime | None:
    """The first fire time strictly after `after` (UTC), or None if there is none."""
    after = after.astimezone(UTC)
    day = after.astimezone(zone).date()
    for _ in range(_SEARCH_DAYS):
        if _day_matches(cron, day):
            for hour in sorted(cron.hours):
                for minute in sorted(cron.minutes):
                    at = _instant(day, hour, minute, zone)
                    if at > after:
                        return at
        day += timedelta(days=1)
    return None


def previous_fire(cron: Cron, zone: ZoneInfo, at: datetime) -> datetime | None:
    """The last fire time at or before `at` (UTC), or None if there is none."""
    at = at.astimezone(UTC)
    day = at.astimezone(zone).date()
    # A gap's wall times fire at the gap's end, which can be on the next local day's
    # instant only in theory; one day of slack keeps the search exact.
    day += timedelta(days=1)
    for _ in range(_SEARCH_DAYS):
        if _day_matches(cron, day):
            for hour in sorted(cron.hours, reverse=True):
                for minute in sorted(cron.minutes, reverse=True):
                    fire = _instant(day, hour, minute, zone)
                    if fire <= at:
                        return fire
        day -= timedelta(days=1)
    return None


def due(spec: ReportSpec, last_slot: datetime | None, now: datetime) -> Slot | None:
    """The slot to send now, or None.

    The latest scheduled time at or before `now` is due unless it was already sent
    (`last_slot`, the latest slot the store recorded for this report, is at or after it).
    A slot missed while the router was down is still sent, once and marked late, while
    `now` is within the report's window of it; after that it is skipped. Only the latest
    missed slot is sent: its window covers the newest part of the earlier ones.
    """
    slot = previous_fire(spec.schedule, spec.zone, now)
    if slot is None:
        return None
    if last_slot is not None and slot <= last_slot.astimezone(UTC):
        return None
    behind = (now.astimezone(UTC) - slot).total_seconds()
    if behind > spec.window:
        return None
    return Slot(slot, late=behind > ON_TIME)


def _day_matches(cron: Cron, day: date) -> bool:
    if day.month not in cron.months:
        return False
    by_day = day.day in cron.days
    by_weekday = (day.weekday() + 1) % 7 in cron.weekdays  # cron: 0 = Sunday
    if cron.any_day and cron.any_weekday:
        return True
    if cron.any_day:
        return by_weekday
    if cron.any_weekday:
        return by_day
    # Vixie cron: both restricted, either matches.
    return by_day or by_weekday


def _instant(day: date, hour: int, minute: int, zone: ZoneInfo) -> datetime:
    """The UTC instant of a wall time in `zone`: its first occurrence when it happens twice,
    the end of the gap when it does not exist."""
    wall = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)  # fold=0: first
    at = wall.astimezone(UTC)
    if at.astimezone(zone).replace(tzinfo=None) == wall.replace(tzinfo=None):
        return at
    # In a gap: read with the offset after the change (fold=1) the wall time lies before
    # the change, read with the one before it lies after; the gap ends at the first minute
    # in between that has the new offset. Zones change on whole minutes.
    after_change = at.astimezone(zone).utcoffset()
    probe = wall.replace(fold=1).astimezone(UTC)
    while probe < at and probe.astimezone(zone).utcoffset() != after_change:
        probe += timedelta(minutes=1)
    return probe
