"""Hypothesis strategies for webhooks: valid and invalid alerts, odd text, any JSON, RFC 3339
timestamps good, bad and at the edges; and the settings every property test of ingest uses."""

from __future__ import annotations

import itertools
import string
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Fixed, so CI runs the same cases every time; no deadline (a fsync can take a while on a
# busy machine); examples are big on purpose.
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)


def fuzz(examples: int) -> settings:
    return settings(FUZZ, max_examples=examples)


# A unique label value per generated alert, so that each can be found in the store.
fuzz_ids = itertools.count()

# Text of every kind: controls, NUL, combining marks, RTL, emoji, private use (no lone
# surrogates: those cannot be encoded; test_fuzz.py gives them a test of their own).
odd_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
label_name = st.one_of(
    st.sampled_from(["service", "namespace", "severity", "team", "Hostname", "gpu", "pod"]),
    odd_text.filter(bool),
)
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    odd_text,
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(odd_text, inner, max_size=5)
    ),
    max_leaves=25,
)


def rfc3339(value: datetime, offset_minutes: int) -> str:
    tz = timezone(timedelta(minutes=offset_minutes))
    return value.astimezone(tz).isoformat()


# Valid RFC 3339 timestamps: any instant of years 1 to 9999 at any UTC offset, mostly
# recent ones (what Alertmanager sends).
good_time = st.builds(
    rfc3339,
    st.one_of(
        st.datetimes(
            min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
        ),
        st.datetimes(
            min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
        ),
    ),
    st.integers(min_value=-18 * 60 + 1, max_value=18 * 60 - 1),
)
bad_time = st.one_of(
    st.sampled_from(
        [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-02-30T00:00:00Z",
            "2024-01-01T25:00:00Z",
            "2024-01-01T00:00:00",  # no timezone
            "2024-01-01",  # a date, no time: midnight, but no timezone
            "2024-01-01T00:00:00+24:00",
            "10000-01-01T00:00:00Z",
            # Valid RFC 3339, but outside what a datetime holds once turned into UTC.
            "9999-12-31T23:00:00-05:00",
            "0001-01-01T00:30:00+01:00",
            "P1D",
        ]
    ),
    odd_text.filter(lambda s: not s[:1].isdigit()),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(odd_text, st.integers(), max_size=2),
    st.booleans(),
)


@st.composite
def valid_alert(draw: st.DrawFn) -> dict[str, Any]:
    """An alert the router must accept: any labels (with an alertname), any annotations,
    valid timestamps; a unique `fuzz_id` label so each one can be found in the store."""
    labels = draw(st.dictionaries(label_name, odd_text, max_size=6))
    labels["alertname"] = draw(odd_text.filter(bool))
    unique = next(fuzz_ids)
    labels["fuzz_id"] = str(unique)
    alert: dict[str, Any] = {
        "status": draw(st.sampled_from(["firing", "resolved"])),
        "labels": labels,
        "startsAt": draw(good_time),
    }
    if draw(st.booleans()):
        alert["annotations"] = draw(st.dictionaries(odd_text, odd_text, max_size=4))
    if draw(st.booleans()):
        alert["endsAt"] = draw(st.one_of(st.just("0001-01-01T00:00:00Z"), good_time))
    if draw(st.booleans()):
        alert["generatorURL"] = draw(odd_text)
    if draw(st.booleans()):
        prefix = draw(st.text(string.hexdigits, max_size=8))
        alert["fingerprint"] = f"{prefix}{unique:08x}"
    if draw(st.booleans()):  # Alertmanager keeps adding fields: ignored
        alert[draw(st.sampled_from(["routeLabels", "notification_reason", "x"]))] = draw(json_value)
    return alert


@st.composite
def invalid_alert(draw: st.DrawFn) -> Any:
    """An alert the router must reject (and only it): one thing wrong with it."""
    base = draw(valid_alert())
    kind = draw(
        st.sampled_from(
            [
                "not an object",
                "no status",
                "bad status",
                "no labels",
                "empty labels",
                "labels not a mapping",
                "no alertname",
                "empty alertname",
                "label value not a string",
                "annotation value not a string",
                "no startsAt",
                "bad startsAt",
                "bad endsAt",
            ]
        )
    )
    if kind == "not an object":
        return draw(st.one_of(json_scalar, st.lists(json_scalar, max_size=3)))
    if kind == "no status":
        del base["status"]
    elif kind == "bad status":
        base["status"] = draw(
            st.one_of(
                st.sampled_from(["FIRING", "firing ", "pending", "", "Resolved"]),
                st.integers(),
                st.none(),
            )
        )
    elif kind == "no labels":
        del base["labels"]
    elif kind == "empty labels":
        base["labels"] = {}
    elif kind == "labels not a mapping":
        base["labels"] = draw(st.one_of(st.lists(odd_text, max_size=3), odd_text, st.integers()))
    elif kind == "no alertname":
        del base["labels"]["alertname"]
    elif kind == "empty alertname":
        base["labels"]["alertname"] = ""
    elif kind == "label value not a string":
        base["labels"][draw(label_name)] = draw(
            st.one_of(st.integers(), st.none(), st.lists(st.integers(), max_size=2))
        )
    elif kind == "annotation value not a string":
        base["annotations"] = {"summary": draw(st.one_of(st.integers(), st.none()))}
    elif kind == "no startsAt":
        del base["startsAt"]
    elif kind == "bad startsAt":
        base["startsAt"] = draw(bad_time)
    elif kind == "bad endsAt":
        base["endsAt"] = draw(bad_time)
    return base


def envelope(alerts: list[Any], **extra: Any) -> dict[str, Any]:
    return {
        "version": "4",
        "status": "firing",
        "receiver": "alert-router",
        "groupKey": "{}:{}",
        "externalURL": "http://alertmanager.test",
        "alerts": alerts,
        **extra,
    }


ALERT_FIELDS = (
    "status",
    "labels",
    "annotations",
    "startsAt",
    "endsAt",
    "generatorURL",
    "fingerprint",
)
ENVELOPE_FIELDS = (
    "version",
    "status",
    "receiver",
    "groupKey",
    "externalURL",
    "commonLabels",
    "truncatedAlerts",
)


# RFC 3339 timestamps of every year, with offsets up to a day: the extremes of what a
# timestamp can say, where conversions to UTC and back leave the usual ranges.
edge_time = st.one_of(
    st.sampled_from(
        [
            "0001-01-01T00:00:00Z",
            "0001-01-01T00:30:00+01:00",
            "0999-06-01T12:00:00Z",
            "1969-12-31T23:59:59.999999Z",
            "1970-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999Z",
            "9999-12-31T23:00:00-05:00",
        ]
    ),
    st.builds(
        "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}{}".format,
        st.integers(min_value=1, max_value=9999),
        st.integers(min_value=1, max_value=12),
        st.integers(min_value=1, max_value=28),
        st.integers(min_value=0, max_value=23),
        st.integers(min_value=0, max_value=59),
        st.integers(min_value=0, max_value=59),
        st.one_of(
            st.just("Z"),
            st.builds(
                "{}{:02d}:{:02d}".format,
                st.sampled_from("+-"),
                st.integers(min_value=0, max_value=23),
                st.integers(min_value=0, max_value=59),
            ),
        ),
    ),
)
