"""The join of result series to an alert's labels, indexed, against its plain definition."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.context.enrich import _Series, _SeriesSet

NAMES = ["service", "namespace", "node", "gpu"]
VALUES = ["a", "b", "c"]
labelsets = st.dictionaries(st.sampled_from(NAMES), st.sampled_from(VALUES), max_size=4)


def reference(
    series: list[_Series], labels: Mapping[str, str], to_alert: Mapping[str, str]
) -> _Series | None:
    """The definition: every series label equals the alert's; most labels wins, then the
    first in label order."""
    matching = [
        s for s in series if all(labels.get(to_alert.get(k, k)) == v for k, v in s.labels.items())
    ]
    if not matching:
        return None
    return min(matching, key=lambda s: (-len(s.labels), sorted(s.labels.items())))


@settings(max_examples=300, deadline=None)
@given(
    results=st.lists(labelsets, max_size=12),
    alert=st.dictionaries(st.sampled_from([*NAMES, "Hostname"]), st.sampled_from(VALUES)),
    join=st.booleans(),
)
def test_indexed_join_equals_the_definition(
    results: list[dict[str, str]], alert: dict[str, str], join: bool
) -> None:
    series = [_Series(labels, ((0.0, float(i)),)) for i, labels in enumerate(results)]
    to_alert = {"node": "Hostname"} if join else {}
    found = _SeriesSet(series).match(alert, to_alert)
    expected = reference(series, alert, to_alert)
    if expected is None:
        # No match: whether some series has only label names the alert carries.
        applies = any(all(to_alert.get(k, k) in alert for k in s.labels) for s in series)
        assert found is applies
    else:
        assert isinstance(found, _Series)
        assert found.labels == expected.labels


def test_a_series_without_labels_matches_every_alert() -> None:
    total = _Series({}, ((0.0, 5.0),))
    assert _SeriesSet([total]).match({"service": "x"}, {}) is total


def test_no_match_says_whether_the_value_applies() -> None:
    per_gpu = _SeriesSet([_Series({"node": "n1", "gpu": "0"}, ((0.0, 1.0),))])
    # A GPU alert of another GPU: the value applies, but has no data for it.
    assert per_gpu.match({"Hostname": "n1", "gpu": "1"}, {"node": "Hostname"}) is True
    # A budget alert: no GPU labels, the value does not apply.
    assert per_gpu.match({"service": "s"}, {"node": "Hostname"}) is False


def test_more_labels_win_over_label_order() -> None:
    broad = _Series({"service": "a"}, ((0.0, 1.0),))
    narrow = _Series({"service": "a", "namespace": "z"}, ((0.0, 2.0),))
    found = _SeriesSet([broad, narrow]).match({"service": "a", "namespace": "z"}, {})
    assert found is narrow
