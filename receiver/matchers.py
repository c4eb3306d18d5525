"""Alertmanager's label matchers: `name="value"`, `!=`, `=~`, `!~`; regexes fully anchored."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

_MATCHER = re.compile(
    r"""^\s*(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*(?P<value>.*?)\s*$""",
    re.DOTALL,
)


class MatchType(StrEnum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


class MatcherError(ValueError):
    """A matcher string that is not Alertmanager's syntax."""


@dataclass(frozen=True)
class Matcher:
    name: str
    type: MatchType
    value: str
    _regex: re.Pattern[str] | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        # Alertmanager: a missing label is the empty string.
        actual = labels.get(self.name, "")
        if self.type is MatchType.EQUAL:
            return actual == self.value
        if self.type is MatchType.NOT_EQUAL:
            return actual != self.value
        assert self._regex is not None
        found = self._regex.fullmatch(actual) is not None
        return found if self.type is MatchType.REGEX else not found

    def __str__(self) -> str:
        return format_matcher(self.name, self.type, self.value)


def quote_value(value: str) -> str:
    """A label value inside a quoted matcher: backslash, double quote and newline escaped,
    as Alertmanager's parser reads them back (`_unquote` is the inverse)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_matcher(name: str, op: MatchType | str, value: str) -> str:
    """`name="value"` in Alertmanager's syntax, the value quoted by `quote_value`."""
    return f'{name}{MatchType(op).value}"{quote_value(value)}"'


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher like `severity=~"critical|error"` (quotes optional)."""
    found = _MATCHER.match(text)
    if not found:
        raise MatcherError(f'{text!r} is not a matcher: write name="value" with one of = != =~ !~')
    name, op, raw = found.group("name"), MatchType(found.group("op")), found.group("value")
    value = _unquote(raw, text)
    regex = None
    if op in (MatchType.REGEX, MatchType.NOT_REGEX):
        try:
            # Alertmanager anchors every regex: ^(?:value)$.
            regex = re.compile(f"(?:{value})", re.DOTALL)
        except re.error as exc:
            raise MatcherError(f"{text!r} has an invalid regex: {exc}") from None
    return Matcher(name, op, value, regex)


def _unquote(raw: str, text: str) -> str:
    if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
        body = raw[1:-1]
        out = []
        chars = iter(body)
        for ch in chars:
            if ch == "\\":
                nxt = next(chars, "")
                out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
            elif ch == '"':
                raise MatcherError(f"{text!r} has an unescaped quote inside the value")
            else:
                out.append(ch)
        return "".join(out)
    if raw.startswith('"') or raw.endswith('"'):
        raise MatcherError(f"{text!r} has an unbalanced quote")
    return raw
