"""The webhook parser: the fast path and the pydantic model give the same answers.

`from_raw` (no pydantic) and `WebhookAlert` + `from_webhook` read the same alerts; the fast
path may only step aside (None), never accept something the model refuses or read it
differently. When it steps aside, the model decides: an Alert or a ValidationError with a
reason, never another exception.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from receiver.ingest.parse import (
    InvalidWebhook,
    WebhookAlert,
    from_raw,
    from_webhook,
    parse_webhook,
    validation_reason,
)
from receiver.models import Alert
from tests.ingest.strategies import (
    ALERT_FIELDS,
    bad_time,
    edge_time,
    envelope,
    fuzz,
    good_time,
    invalid_alert,
    json_value,
    odd_text,
    valid_alert,
)

# What Alertmanager puts around the alerts; the parser copies three of these, as text.
envelope_fields = st.fixed_dictionaries(
    {},
    optional={
        "externalURL": st.one_of(odd_text, json_value),
        "receiver": st.one_of(odd_text, json_value),
        "groupKey": st.one_of(odd_text, json_value),
    },
)


_NEAR_MISSES = [
    "no zone",
    "lower case",
    "space",
    "no colon in offset",
    "ten fraction digits",
    "comma fraction",
    "leap second",
    "hour 24",
    "offset 24h",
    "year 0",
    "five-digit year",
    "short date",
    "trailing space",
    "unicode digit",
]


def _near_miss(stamp: str, change: str) -> str:
    """`stamp` (valid RFC 3339) changed in one small way that a parser might overlook."""
    date, _, rest = stamp.partition("T")
    clock, zone = rest[:8], rest[8:]
    changes = {
        "no zone": f"{date}T{clock}",
        "lower case": stamp.lower(),
        "space": f"{date} {rest}",
        "no colon in offset": f"{date}T{clock}+0100",
        "ten fraction digits": f"{date}T{clock}.1234567890Z",
        "comma fraction": f"{date}T{clock},5Z",
        "leap second": f"{date}T{clock[:6]}60{zone}",
        "hour 24": f"{date}T24{clock[2:]}{zone}",
        "offset 24h": f"{date}T{clock}+24:00",
        "year 0": f"0000{date[4:]}T{rest}",
        "five-digit year": f"1{date}T{rest}",
        "short date": f"{date[:7]}T{rest}",
        "trailing space": f"{stamp} ",
        # An Arabic-Indic zero: a digit to the regex \d, not to RFC 3339.
        "unicode digit": stamp.replace("0", "\u0660", 1),
    }
    return changes[change]


# Timestamps of every kind: valid, invalid, at the edges, and valid ones changed slightly.
any_time = st.one_of(
    good_time,
    bad_time,
    edge_time,
    st.builds(_near_miss, st.one_of(good_time, edge_time), st.sampled_from(_NEAR_MISSES)),
)


@st.composite
def time_alert(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed alert but for its timestamps, which can be anything."""
    alert: dict[str, Any] = {
        "status": draw(st.sampled_from(["firing", "resolved"])),
        "labels": {"alertname": "Times"},
        "startsAt": draw(any_time),
    }
    if draw(st.booleans()):
        alert["endsAt"] = draw(st.one_of(st.just("0001-01-01T00:00:00Z"), any_time))
    return alert


# Any alert-shaped object: valid, with one thing wrong, at the time edges, or any JSON in
# any of the fields.
any_alert = st.one_of(
    valid_alert(),
    invalid_alert().filter(lambda alert: isinstance(alert, dict)),
    time_alert(),
    st.dictionaries(st.sampled_from(ALERT_FIELDS), json_value),
)


def by_model(raw: dict[str, Any], around: dict[str, Any]) -> Alert:
    return from_webhook(WebhookAlert.model_validate(raw), around)


def assert_same(fast: Alert, model: Alert) -> None:
    assert fast == model
    # Equal datetimes may still differ in zone; both are in UTC, and write out the same.
    for value in (fast.starts_at, fast.ends_at, model.starts_at, model.ends_at):
        assert value is None or value.utcoffset() == timedelta(0)
    assert fast.to_json() == model.to_json()


@fuzz(400)
@given(raw=valid_alert(), around=envelope_fields)
def test_fast_path_and_model_read_a_valid_alert_alike(
    raw: dict[str, Any], around: dict[str, Any]
) -> None:
    fast = from_raw(raw, around)
    # Alertmanager's alerts all have the usual shape: the fast path takes every one.
    assert fast is not None, raw
    assert_same(fast, by_model(raw, around))


@fuzz(800)
@given(raw=any_alert, around=envelope_fields)
def test_fast_path_never_decides_otherwise_than_the_model(
    raw: dict[str, Any], around: dict[str, Any]
) -> None:
    fast = from_raw(raw, around)
    try:
        model = by_model(raw, around)
    except ValidationError as exc:
        # Refused by the model: the fast path did not accept it, and there is a reason.
        assert fast is None, raw
        assert validation_reason(exc)
        return
    if fast is not None:
        assert_same(fast, model)


@fuzz(1000)
@given(raw=time_alert())
def test_fast_path_and_model_agree_on_every_timestamp(raw: dict[str, Any]) -> None:
    fast = from_raw(raw, {})
    try:
        model = by_model(raw, {})
    except ValidationError as exc:
        assert fast is None, raw
        assert validation_reason(exc)
        return
    if fast is not None:
        assert_same(fast, model)


@fuzz(150)
@given(alerts=st.lists(st.one_of(any_alert, json_value), max_size=6), around=envelope_fields)
def test_every_alert_is_accepted_or_rejected_with_its_index(
    alerts: list[Any], around: dict[str, Any]
) -> None:
    body = {**envelope(alerts), **around}
    try:
        data = orjson.dumps(body)
    except TypeError:  # an integer past 64 bits: orjson cannot write it
        return
    webhook = parse_webhook(data)
    assert len(webhook.alerts) + len(webhook.rejected) == len(alerts)
    for rejected in webhook.rejected:
        assert rejected["reason"], rejected
        raw = alerts[rejected["index"]]
        if not isinstance(raw, dict):
            assert rejected["reason"] == "alert must be a JSON object"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "body is not valid JSON"),
        (b"[]", "body must be a JSON object (Alertmanager webhook)"),
        (b'{"version": 4, "alerts": []}', "unsupported webhook version 4"),
        (b'{"alerts": null}', "body has no 'alerts' list"),
    ],
)
def test_a_body_that_is_no_webhook_is_invalid(body: bytes, message: str) -> None:
    with pytest.raises(InvalidWebhook) as caught:
        parse_webhook(body)
    assert caught.value.message == message
    assert isinstance(caught.value.details, list)


def test_a_webhook_without_version_is_read_as_version_4() -> None:
    body = b'{"alerts": [{"status": "firing", "labels": {"alertname": "A"}, "startsAt": '
    body += b'"2024-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z"}]}'
    webhook = parse_webhook(body)
    assert webhook.rejected == []
    [alert] = webhook.alerts
    # Alertmanager's zero time means "no end".
    assert alert.name == "A" and alert.ends_at is None
