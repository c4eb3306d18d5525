"""The `reports:` schema: each mistake refused with what to write instead."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from receiver.config.reports import (
    DEFAULT_SPEND,
    SECTIONS,
    ReportSpec,
    parse_cron,
    report_problems,
)
from receiver.config.schema import DestinationSpec

BASE: dict[str, Any] = {"to": ["finops-bot"], "schedule": "0 9 * * 1-5"}


def error_of(**changes: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        ReportSpec.model_validate({**BASE, **changes})
    return str(caught.value)


def test_defaults() -> None:
    spec = ReportSpec.model_validate(BASE)
    assert spec.timezone == "UTC" and spec.window == 86400.0
    assert spec.sections == list(SECTIONS) and spec.top == 10 and spec.chart is False
    assert spec.queries.spend == DEFAULT_SPEND
    assert spec.schedule.text == "0 9 * * 1-5"


# (the bad field, what the error says)
ERRORS = [
    ({"timezone": "Europe/Berln"}, "unknown timezone 'Europe/Berln': use an IANA name"),
    ({"schedule": "0 9 * *"}, "write 5 fields"),
    ({"schedule": "61 9 * * *"}, "cron minute '61' is not valid: use *, a number 0-59"),
    ({"schedule": "0 9 * * mon-fry"}, "cron day of week 'fry' is not valid"),
    ({"schedule": "0 9 * * 5-1"}, "cron day of week '5-1' is not valid"),
    ({"schedule": "*/0 9 * * *"}, "cron minute '*/0' is not valid"),
    ({"schedule": 9}, "schedule must be a cron expression in quotes"),
    ({"sections": ["spend", "wast"]}, "unknown section 'wast': use one of spend, waste"),
    ({"sections": ["spend", "spend"]}, "each section once"),
    ({"window": "24"}, "'24' is not a duration"),
    ({"window": "30m"}, "a report's window is at least 1h"),
    ({"top": 0}, "greater than 0"),
    ({"queries": {"spnd": "x"}}, "Extra inputs are not permitted"),
    ({"colour": "red"}, "Extra inputs are not permitted"),
]


@pytest.mark.parametrize(("changes", "message"), ERRORS)
def test_errors_say_what_to_write(changes: dict[str, Any], message: str) -> None:
    assert message in error_of(**changes)


def test_cron_ranges_lists_steps_and_names() -> None:
    cron = parse_cron("0,30 8-18/2 1,15 jan-mar,dec sun,7")
    assert cron.minutes == {0, 30}
    assert cron.hours == {8, 10, 12, 14, 16, 18}
    assert cron.days == {1, 15}
    assert cron.months == {1, 2, 3, 12}
    assert cron.weekdays == {0}  # 7 is Sunday too
    assert parse_cron("5/20 * * * *").minutes == {5, 25, 45}


def test_report_problems_name_the_destination_and_its_place() -> None:
    destinations = {
        "finops-bot": DestinationSpec.model_validate(
            {"slack": {"token": {"secret": "t"}, "channel": "#c"}}
        ),
        "oncall": DestinationSpec.model_validate({"pagerduty": {"routing_key": {"secret": "k"}}}),
    }
    reports = {"daily": ReportSpec.model_validate({**BASE, "to": ["finops-bot", "oncall", "nope"]})}
    assert report_problems(reports, destinations) == [
        (
            ("reports", "daily", "to", 1),
            "destination 'oncall' is PagerDuty: reports go to Slack only (use one of: finops-bot)",
        ),
        (
            ("reports", "daily", "to", 2),
            "destination 'nope' is not defined: use a Slack one (finops-bot)",
        ),
    ]
