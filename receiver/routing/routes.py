"""Routing: which destinations an alert reaches, by labels and by cost context (and, for
a Grafana alert, its query values)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from receiver.config.rules import GRAFANA_VALUE_PREFIX, Route, Rules
from receiver.models import Alert


def condition_values(alert: Alert, context: Mapping[str, float]) -> dict[str, float]:
    """The numbers `when:` tests for `alert`: its cost context, and for a Grafana alert
    each query value as `grafana.<refId>` (`grafana.A`). A condition on a value the alert
    does not carry does not match, as for a missing context value."""
    values = dict(context)
    if alert.grafana is not None:
        for ref, value in alert.grafana.values.items():
            values[GRAFANA_VALUE_PREFIX + ref] = value
    return values


@dataclass(frozen=True)
class Target:
    """One destination an alert is routed to, with the route that sent it there."""

    destination: str
    route: Route


def matching_routes(
    rules: Rules, labels: Mapping[str, str], context: Mapping[str, float]
) -> list[Route]:
    """Routes that match, in order: first match wins unless the route says continue."""
    found: list[Route] = []
    for route in rules.routes:
        if not all(m.matches(labels) for m in route.matchers):
            continue
        if not all(c.holds(context.get(c.context)) for c in route.when):
            continue
        found.append(route)
        if not route.continue_:
            break
    if not found:
        default = rules.default_route()
        if default is not None:
            found.append(default)
    return found


def route_alert(
    rules: Rules, labels: Mapping[str, str], context: Mapping[str, float]
) -> list[Target]:
    """Destinations for an alert, each once; the first route naming it decides its settings."""
    return _targets(matching_routes(rules, labels, context))


def _targets(routes: Sequence[Route]) -> list[Target]:
    targets: dict[str, Target] = {}
    for route in routes:
        for dest in route.to:
            targets.setdefault(dest, Target(dest, route))
    return list(targets.values())


@dataclass(frozen=True)
class Choice:
    """Where routing sends one alert, and why: the routes that decided, the numbers their
    `when` conditions compared (none for a resolve), and each destination once, with the
    route that sent it there."""

    routes: tuple[Route, ...]
    values: Mapping[str, float]
    targets: tuple[Target, ...]


def choose(rules: Rules, alert: Alert, context: Mapping[str, float]) -> Choice:
    """The routing of `alert` with its cost context's numbers: a firing by its labels and
    `when` conditions, first match first (`route_alert`); a resolve to every destination
    its firing may have reached (`resolve_targets`). The pipeline plans from it and the
    history records it, so the history's "why" is what decided."""
    if alert.firing:
        values = condition_values(alert, context)
        routes = matching_routes(rules, alert.labels, values)
        return Choice(tuple(routes), values, tuple(_targets(routes)))
    targets = resolve_targets(rules, alert.labels)
    by_name = {target.route.name: target.route for target in targets}
    return Choice(tuple(by_name.values()), {}, tuple(targets))


def resolve_targets(rules: Rules, labels: Mapping[str, str]) -> list[Target]:
    """Every destination a firing of these labels may have reached, whatever its cost
    context was then: all routes whose matchers match, ignoring `when` and first-match,
    plus the default. The ledger then keeps only those where the firing was sent, so a
    resolve reaches a destination chosen by a money condition that no longer holds."""
    targets: dict[str, Target] = {}
    for route in rules.routes:
        if all(m.matches(labels) for m in route.matchers):
            for dest in route.to:
                targets.setdefault(dest, Target(dest, route))
    default = rules.default_route()
    if default is not None:
        for dest in default.to:
            targets.setdefault(dest, Target(dest, default))
    return list(targets.values())
