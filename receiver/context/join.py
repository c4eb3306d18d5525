"""Joining query results to alerts on shared labels.

A result series belongs to an alert when every label of the series equals the alert's
label of the same name, or of the alert label that the value's `join` maps to it (alert
`Hostname` -> result `node`); a series without labels (`sum(x)`, a scalar) belongs to
every alert. Where several series match, the most specific one (most labels) wins, then
the first in label order; they are not summed, since overlapping series would count twice.
A value whose result has no series with label names the alert carries does not apply to
the alert at all (a GPU value for a budget alert).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from receiver.context.prometheus import NO_DATA, Failure, Series

# The label names of each kind of series a query returned.
Shapes = frozenset[frozenset[str]]


class SeriesSet:
    """A query's result series, indexed for the join: series with the same label names
    (a shape) sit in one table keyed by their label values, so finding an alert's series
    costs a lookup per shape, not a pass over every series (a storm joins thousands of
    alerts against results of hundreds of series)."""

    __slots__ = ("_tables", "series", "shapes")

    def __init__(self, series: Iterable[Series]) -> None:
        self.series = tuple(series)
        tables: dict[tuple[str, ...], dict[tuple[str, ...], Series]] = {}
        for one in self.series:
            names = tuple(sorted(one.labels))
            values = tuple(one.labels[name] for name in names)
            tables.setdefault(names, {}).setdefault(values, one)
        # Most specific shape first: a match there beats any match in a smaller shape.
        self._tables = sorted(tables.items(), key=lambda item: -len(item[0]))
        self.shapes: Shapes = frozenset(frozenset(names) for names in tables)

    def __bool__(self) -> bool:
        return bool(self.series)

    def __len__(self) -> int:
        return len(self.series)

    def match(self, labels: Mapping[str, str], to_alert: Mapping[str, str]) -> Series | bool:
        """The most specific series whose every label equals the alert's (through
        `to_alert`); among equally specific ones, the first in label order. Without one:
        True when some series has only label names the alert carries (the value applies
        to the alert, but has no data for it), False when none has (it does not apply)."""
        best: Series | None = None
        best_items: list[tuple[str, str]] | None = None
        applies = False
        for names, table in self._tables:
            if best is not None and len(names) < len(best.labels):
                break
            values = []
            for name in names:
                value = labels.get(to_alert.get(name, name))
                if value is None:
                    break
                values.append(value)
            else:
                applies = True
                found = table.get(tuple(values))
                if found is not None:
                    items = sorted(found.labels.items())
                    if best_items is None or items < best_items:
                        best, best_items = found, items
        return best if best is not None else applies


# What a query gave a value: its series, indexed, or why it has none.
Result = SeriesSet | Failure


def lookup(
    result: Result,
    shapes: Shapes | None,
    labels: Mapping[str, str],
    to_alert: Mapping[str, str],
) -> Series | Failure | None:
    """This alert's series, why it has none, or None when the value does not apply.
    `shapes`: the label names the query's series had when it last returned some (None:
    never); `to_alert` maps result label names to the alert's (the inverse of `join`)."""
    if isinstance(result, Failure):
        return result if _applies(shapes, labels, to_alert) else None
    if result:
        found = result.match(labels, to_alert)
        if isinstance(found, Series):
            return found
        return NO_DATA if found else None
    # No series at all: whether the value applies, from the shapes it had before.
    return NO_DATA if _applies(shapes, labels, to_alert) else None


def _applies(shapes: Shapes | None, labels: Mapping[str, str], to_alert: Mapping[str, str]) -> bool:
    """Whether some series shape can join this alert. Unknown shape: assume it applies."""
    if shapes is None:
        return True
    return any(all(to_alert.get(name, name) in labels for name in shape) for shape in shapes)
