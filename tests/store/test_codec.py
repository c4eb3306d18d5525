"""The stored form of rows: whatever a store writes, it reads back the same."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from hypothesis import given
from hypothesis import strategies as st

from receiver.models import Alert, ContextValue, CostContext, DedupReason, Unit
from receiver.store import codec

# Any text orjson can write: UTF-8 has no lone surrogates.
_text = st.text(st.characters(codec="utf-8"), max_size=20)
# Stored times keep milliseconds, as Alertmanager writes them (RFC 3339, UTC).
_times = st.datetimes(timezones=st.just(UTC)).map(
    lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000)
)
alerts = st.builds(
    Alert,
    fingerprint=_text,
    status=st.sampled_from(["firing", "resolved"]),
    labels=st.dictionaries(_text, _text, max_size=5),
    annotations=st.dictionaries(_text, _text, max_size=3),
    starts_at=_times,
    ends_at=st.none() | _times,
    generator_url=_text,
    external_url=_text,
    receiver=_text,
    group_key=_text,
)
contexts = st.builds(
    CostContext,
    values=st.lists(
        st.builds(
            ContextValue,
            name=_text,
            title=_text,
            # JSON has no NaN or infinity (orjson writes null); a context holds numbers.
            value=st.floats(allow_nan=False, allow_infinity=False),
            unit=st.sampled_from(Unit),
        ),
        max_size=3,
    ).map(tuple),
    unavailable=st.lists(st.tuples(_text, _text), max_size=3).map(tuple),
)
refs = st.none() | st.dictionaries(_text, _text, min_size=1, max_size=3)
times = st.floats(min_value=0, max_value=1e10, allow_nan=False)


@given(alerts)
def test_alert_round_trip(alert: Alert) -> None:
    assert codec.load_alert(codec.dump_alert(alert)) == alert
    # Redis answers text, SQLite bytes: both read back.
    assert codec.load_alert(codec.dump_alert(alert).decode()) == alert


@given(contexts)
def test_context_round_trip(context: CostContext) -> None:
    assert codec.load_context(codec.dump_context(context)) == context


@given(refs)
def test_ref_round_trip(ref: dict[str, str] | None) -> None:
    stored = codec.dump_ref(ref)
    assert codec.load_ref(stored) == ref
    assert codec.load_ref(stored.decode() if stored else stored) == ref


def test_an_empty_ref_is_no_ref() -> None:
    assert codec.dump_ref({}) is None
    assert codec.load_ref(None) is None
    assert codec.load_ref("") is None


@given(alerts, times)
def test_received_round_trip(alert: Alert, received_at: float) -> None:
    assert codec.load_received(codec.dump_received(alert, received_at)) == codec.Received(
        alert, received_at
    )


@given(alerts, contexts, times)
def test_notification_round_trip(alert: Alert, context: CostContext, received_at: float) -> None:
    stored = codec.dump_notification(alert, context, received_at)
    assert codec.load_notification(stored) == codec.Notification(alert, context, received_at)


def test_formats_are_the_stored_ones() -> None:
    # State written by earlier versions reads back: these shapes are the stored ones.
    alert = Alert("fp", "firing", {"alertname": "A"}, {}, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert orjson.loads(codec.dump_alert(alert)) == alert.to_json()
    assert orjson.loads(codec.dump_received(alert, 1.5)) == {
        "alert": alert.to_json(),
        "received_at": 1.5,
    }
    assert orjson.loads(codec.dump_notification(alert, CostContext(), 2.5)) == {
        "alert": alert.to_json(),
        "context": {"values": [], "unavailable": []},
        "received_at": 2.5,
    }
    assert codec.dump_ref({"channel": "C1", "ts": "1.1"}) == b'{"channel":"C1","ts":"1.1"}'


def test_outbox_item_from_stored_fields() -> None:
    alert = Alert("fp", "resolved", {"alertname": "A"}, {}, datetime(2026, 1, 2, tzinfo=UTC))
    item = codec.outbox_item(
        item_id="7",
        destination="slack",
        route="r",
        reason="resolved",
        notification=codec.Notification(alert, CostContext(), 3.0),
        attempts="2",  # Redis answers text
        ref='{"ts":"1.1"}',
    )
    assert (item.id, item.reason, item.attempts, item.ref) == (
        "7",
        DedupReason.RESOLVED,
        2,
        {"ts": "1.1"},
    )
    assert (item.alert, item.context, item.received_at) == (alert, CostContext(), 3.0)
