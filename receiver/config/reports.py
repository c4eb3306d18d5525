"""The rules file's `reports:` section: scheduled cost reports, as strict pydantic models.

    reports:
      daily-costs:
        to: [finops-bot]            # Slack destinations only
        schedule: "0 9 * * 1-5"     # cron: minute hour day-of-month month day-of-week
        timezone: Europe/Berlin     # IANA name; DST handled by receiver.reports.schedule
        window: 24h
        sections: [spend, waste, budgets, changes, incidents]
        top: 10
        chart: true
        queries: {spend: "sum by (service) (service_cost_per_hour)"}

Every error is a ValueError that says what to write instead, so the rules loader's located
errors name file, line and path. `report_problems` holds the checks that need the other
sections of the file (which destinations exist, and of what kind).
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from receiver.config.durations import parse_duration

SECTIONS = ("spend", "waste", "budgets", "changes", "incidents")
Section = Literal["spend", "waste", "budgets", "changes", "incidents"]

# The shipped PromQL of each query a section runs, for the platform's seed metrics.
# Labels each result must carry are named in the field's comment.
DEFAULT_SPEND = "sum by (service) (service_cost_per_hour)"
# A GPU's utilization in percent, labels Hostname and gpu; `service` where a pod runs on it
# (the pod's name without its last dash part: a StatefulSet ordinal or a pod suffix).
DEFAULT_GPU_UTILIZATION = (
    'label_replace(avg by (Hostname, gpu, pod) (DCGM_FI_DEV_GPU_UTIL), "service", "$1", '
    '"pod", "(.+)-[^-]+")'
)
DEFAULT_GPU_COST = "sum by (node, instance_type, gpu_type) (gpu_cost_per_hour)"
DEFAULT_BUDGET_USED = "max by (service) (budget_utilization_percentage)"
DEFAULT_PROJECTION = "sum by (service) (monthly_cost_projection)"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReportQueries(_Strict):
    """The PromQL a report runs; each may be overridden in the rules file."""

    # $/hour per service (label `service`): spend and changes.
    spend: str = Field(default=DEFAULT_SPEND, min_length=1)
    # GPU utilization in percent (labels Hostname, gpu; `service` optional): waste.
    gpu_utilization: str = Field(default=DEFAULT_GPU_UTILIZATION, min_length=1)
    # $/hour per GPU node (label `node`; `instance_type`, `gpu_type` optional): waste.
    gpu_cost: str = Field(default=DEFAULT_GPU_COST, min_length=1)
    # Budget used in percent per service: budgets.
    budget_used: str = Field(default=DEFAULT_BUDGET_USED, min_length=1)
    # Projected month-end cost in $ per service: budgets.
    projection: str = Field(default=DEFAULT_PROJECTION, min_length=1)


# -- cron --------------------------------------------------------------------------------

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (name, lowest, highest, names starting at `lowest`)
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_LONGEST_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_PART = re.compile(r"^(\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(\d+))?$")


@dataclass(frozen=True, slots=True)
class Cron:
    """A standard 5-field cron expression, parsed: the allowed values of each field.

    As in Vixie cron, when both day of month and day of week are restricted (neither is
    `*`), a day matches if either does. Day of week 7 is Sunday, like 0.
    """

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool


def parse_cron(text: str) -> Cron:
    """`text` parsed; ValueError naming the field that is wrong and the accepted forms."""
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(
            f"{text!r} is not a cron expression: write 5 fields (minute hour day-of-month "
            "month day-of-week), e.g. '0 9 * * 1-5'"
        )
    values = [_field(raw, *spec) for raw, spec in zip(fields, _FIELDS, strict=True)]
    weekdays = frozenset(0 if day == 7 else day for day in values[4])
    if (
        fields[2] != "*"
        and fields[4] == "*"
        and not any(day <= _LONGEST_MONTH[month - 1] for day in values[2] for month in values[3])
    ):
        # "0 9 30 2 *": cron would never fire; say so rather than wait forever.
        raise ValueError(f"{text!r} never fires: no month of those has that day")
    return Cron(
        text=text,
        minutes=values[0],
        hours=values[1],
        days=values[2],
        months=values[3],
        weekdays=weekdays,
        any_day=fields[2] == "*",
        any_weekday=fields[4] == "*",
    )


def _field(raw: str, name: str, low: int, high: int, names: tuple[str, ...]) -> frozenset[int]:
    allowed: set[int] = set()
    for part in raw.lower().split(","):
        found = _PART.match(part)
        if not found:
            raise ValueError(_cron_error(raw, name, low, high, names))
        span, step_text = found.group(1), found.group(2)
        if span == "*":
            first, last = low, high
        elif "-" in span:
            a, b = span.split("-")
            first, last = _value(a, name, low, high, names), _value(b, name, low, high, names)
        else:
            first = _value(span, name, low, high, names)
            # "5/15" means from 5 to the end, every 15 (as cronie reads it).
            last = high if step_text else first
        step = int(step_text) if step_text else 1
        if step < 1 or first > last:
            raise ValueError(_cron_error(raw, name, low, high, names))
        allowed.update(range(first, last + 1, step))
    return frozenset(allowed)


def _value(text: str, name: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if text in names:
        return names.index(text) + low
    if not text.isdigit() or not low <= int(text) <= high:
        raise ValueError(_cron_error(text, name, low, high, names))
    return int(text)


def _cron_error(raw: str, name: str, low: int, high: int, names: tuple[str, ...]) -> str:
    spelled = f" or {names[0]}-{names[-1]}" if names else ""
    return (
        f"cron {name} {raw!r} is not valid: use *, a number {low}-{high}{spelled}, a range "
        "(1-5), a list (1,3) or a step (*/15)"
    )


def _cron(value: Any) -> Cron:
    if isinstance(value, Cron):
        return value
    if not isinstance(value, str):
        raise ValueError("schedule must be a cron expression in quotes, e.g. '0 9 * * 1-5'")
    return parse_cron(value)


CronField = Annotated[Cron, BeforeValidator(_cron)]


# -- the report --------------------------------------------------------------------------


def _window(value: Any) -> float:
    if not isinstance(value, str):
        raise ValueError("window must be a duration such as 24h or 7d")
    seconds = parse_duration(value)
    if seconds < 3600:
        raise ValueError("a report's window is at least 1h")
    return seconds


class ReportSpec(_Strict):
    """One scheduled report."""

    to: list[str] = Field(min_length=1)
    schedule: CronField
    timezone: str = "UTC"
    window: Annotated[float, BeforeValidator(_window)] = 24 * 3600.0
    sections: list[str] = Field(default_factory=lambda: list(SECTIONS), min_length=1)
    top: int = Field(default=10, gt=0)
    chart: bool = False
    queries: ReportQueries = Field(default_factory=ReportQueries)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r}: use an IANA name such as Europe/Berlin, "
                "America/New_York or UTC"
            ) from None
        return value

    @field_validator("sections")
    @classmethod
    def _sections(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in SECTIONS:
                raise ValueError(f"unknown section {name!r}: use one of {', '.join(SECTIONS)}")
        if len(set(value)) != len(value):
            raise ValueError("each section once")
        return value

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


class _Destination(Protocol):
    """What `report_problems` reads of a destination (schema.DestinationSpec)."""

    @property
    def slack(self) -> object | None: ...

    @property
    def pagerduty(self) -> object | None: ...


Problem = tuple[tuple[str | int, ...], str]


def report_problems(
    reports: Mapping[str, ReportSpec], destinations: Mapping[str, _Destination]
) -> list[Problem]:
    """Each report destination that is undefined or not Slack, with its path in the file
    (`("reports", name, "to", index)`) and what to change."""
    problems: list[Problem] = []
    slack = sorted(name for name, dest in destinations.items() if dest.slack is not None)
    known = ", ".join(slack) or "none defined"
    for name, report in reports.items():
        for index, dest in enumerate(report.to):
            where: tuple[str | int, ...] = ("reports", name, "to", index)
            spec = destinations.get(dest)
            if spec is None:
                problems.append(
                    (where, f"destination {dest!r} is not defined: use a Slack one ({known})")
                )
            elif spec.slack is None:
                problems.append(
                    (
                        where,
                        f"destination {dest!r} is PagerDuty: reports go to Slack only "
                        f"(use one of: {known})",
                    )
                )
    return problems
