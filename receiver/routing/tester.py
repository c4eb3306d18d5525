"""The route tester: where labels and context values would be routed, and why, as lines of
text. `alert-router route` prints them and the web page's rules tester shows them."""

from __future__ import annotations

from collections.abc import Mapping

from receiver.config.rules import Condition, Rules
from receiver.routing.routes import matching_routes, route_alert


def parse_context(rules: Rules, values: Mapping[str, str]) -> dict[str, float]:
    """`name -> text` context values as numbers; ValueError naming the first value that the
    rules do not know or that is not a number."""
    context: dict[str, float] = {}
    for name, value in values.items():
        if not rules.knows_value(name):
            known = ", ".join(rules.context) or "none"
            raise ValueError(f"unknown context value {name!r} (defined: {known})")
        try:
            context[name] = float(value)
        except ValueError:
            raise ValueError(f"context value {name}={value!r} is not a number") from None
    return context


def route_report(
    rules: Rules, labels: Mapping[str, str], context: Mapping[str, float]
) -> list[str]:
    """The destinations (first line), then each route taken with its conditions, then each
    route whose matchers hold but whose money conditions do not, with the values compared."""
    targets = route_alert(rules, labels, context)
    lines = [", ".join(t.destination for t in targets) or "(no destination)"]
    for route in matching_routes(rules, labels, context):
        conditions = "; ".join(_compared(c, context) for c in route.when)
        lines.append(
            f"  route {route.name} -> {', '.join(route.to)}"
            + (f"  when {conditions}" if conditions else "")
        )
    for route in rules.routes:
        if route.when and all(m.matches(labels) for m in route.matchers):
            failing = [c for c in route.when if not c.holds(context.get(c.context))]
            if failing:
                lines.append(
                    f"  (route {route.name} matches the labels but not "
                    + "; ".join(_compared(c, context, hint=True) for c in failing)
                    + ")"
                )
    return lines


def _compared(condition: Condition, context: Mapping[str, float], *, hint: bool = False) -> str:
    if condition.context in context:
        return f"{condition} (value {context[condition.context]:g})"
    if hint:
        return f"{condition} (no value; pass --context {condition.context}=N)"
    return str(condition)
