"""The rules page: the loaded rules as tables (secrets by their key names only: the rules
hold nothing else), and the route tester that answers as `alert-router route` does."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from receiver.config.durations import format_duration
from receiver.config.rules import Rules
from receiver.routing.tester import parse_context, route_report
from receiver.web.status import kind_of


@dataclass(frozen=True)
class Tested:
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def rules_view(rules: Rules) -> dict[str, Any]:
    destinations = []
    for name, spec in rules.destinations.items():
        if spec.slack is not None:
            where = spec.slack.channel or "the webhook's channel"
            rate = f"{spec.slack.max_per_second:g}/s"
        else:
            assert spec.pagerduty is not None
            where = f"default severity {spec.pagerduty.default_severity}"
            rate = f"{spec.pagerduty.max_per_minute:g}/min"
        destinations.append(
            {
                "name": name,
                "kind": kind_of(spec),
                "secrets": spec.secret_keys(),
                "where": where,
                "rate": rate,
            }
        )
    routes = [
        {
            "name": route.name,
            "matchers": [str(m) for m in route.matchers],
            "when": [str(c) for c in route.when],
            "to": list(route.to),
            "continue": route.continue_,
            "repeat_interval": format_duration(route.repeat_interval),
            "send_resolved": route.send_resolved,
        }
        for route in rules.routes
    ]
    context = [
        {
            "name": name,
            "title": spec.display_title,
            "unit": spec.unit.value,
            "query": spec.query,
            "join": ", ".join(f"{a}={b}" for a, b in spec.join.items()),
        }
        for name, spec in rules.context.items()
    ]
    return {
        "path": str(rules.path),
        "destinations": destinations,
        "routes": routes,
        "default": rules.default,
        "context": context,
        "reports": sorted(rules.reports),
    }


def try_route(rules: Rules, labels_text: str, context_text: str) -> Tested:
    """The tester's answer for `name=value` lines of labels and of context values."""
    problems: list[str] = []
    labels = _pairs(labels_text, "label", problems)
    values = _pairs(context_text, "context value", problems)
    context: dict[str, float] = {}
    try:
        context = parse_context(rules, values)
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        return Tested(problems=problems)
    return Tested(lines=route_report(rules, labels, context))


def _pairs(text: str, what: str, problems: list[str]) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            problems.append(f"{what} {line!r} must be name=value")
            continue
        found[name.strip()] = value.strip()
    return found
