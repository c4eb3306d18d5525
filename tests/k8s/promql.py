"""Just enough PromQL reading to check which metrics and label values a query uses.

Syntax is promtool's job; this only pulls out metric names and label matchers so the
tests can compare them with what the app and the platform export.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_SELECTOR = re.compile(r"(?<![\w:])([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_BRACES = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf", "nan"}
)
_LITERAL_ALTERNATION = re.compile(r"^[A-Za-z0-9_.:-]+(?:\|[A-Za-z0-9_.:-]+)*$")


@dataclass(frozen=True)
class LabelMatcher:
    metric: str
    label: str
    op: str
    value: str

    def literal_values(self) -> list[str]:
        """The values a matcher names: `a` for `=`, `a|b` split for a literal-only regex."""
        if self.op in ("=", "!="):
            return [self.value]
        if _LITERAL_ALTERNATION.match(self.value):
            return self.value.split("|")
        return []


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions and keywords left out)."""
    text = _BRACES.sub(" ", expr)
    text = _STRING.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return {name for name in _IDENT.findall(text) if name.lower() not in _KEYWORDS}


def label_matchers(expr: str) -> list[LabelMatcher]:
    """`metric{label op "value"}` matchers of every selector that names its metric."""
    found: list[LabelMatcher] = []
    for selector in _SELECTOR.finditer(expr):
        metric, body = selector.group(1), selector.group(2)
        if not metric or metric in _KEYWORDS:
            continue
        for label, op, value in _MATCHER.findall(body):
            found.append(LabelMatcher(metric, label, op, value))
    return found
