"""Matcher quoting: the one way a label value is written into a matcher."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.matchers import MatchType, format_matcher, parse_matcher, quote_value


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("plain", "plain"),
        ('say "hi"', 'say \\"hi\\"'),
        ("back\\slash", "back\\\\slash"),
        ("two\nlines", "two\\nlines"),  # a raw newline would end the matcher in a URL or amtool
    ],
)
def test_quote_value(value: str, quoted: str) -> None:
    assert quote_value(value) == quoted


@given(st.text(), st.sampled_from([MatchType.EQUAL, MatchType.NOT_EQUAL]))
def test_format_matcher_reads_back(value: str, op: MatchType) -> None:
    matcher = parse_matcher(format_matcher("service", op, value))
    assert (matcher.name, matcher.type, matcher.value) == ("service", op, value)
    assert matcher.matches({"service": value}) is (op is MatchType.EQUAL)


def test_str_of_a_matcher_is_its_source_form() -> None:
    assert str(parse_matcher('alertname=~"High.*|Idle\\nGPU"')) == 'alertname=~"High.*|Idle\\nGPU"'
