"""Loading and validating `rules/routes.yaml`: destinations, cost context, routes.

The whole file is validated at load. Every error names the file, the line, the
path inside the file and what to change; unknown keys are rejected.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)

from receiver.config.budgets import read_budgets
from receiver.config.located import Lines, YamlError, load_located, problem, validation_problems
from receiver.config.reports import ReportSpec, report_problems
from receiver.config.schema import (
    ContextSpec,
    DestinationSpec,
    RulesFile,
)
from receiver.matchers import Matcher, MatcherError, parse_matcher

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
# `when:` tests a Grafana alert's query value by its refId as `grafana.<refId>`
# (`grafana.A`); other names are context values of the rules file.
GRAFANA_VALUE_PREFIX = "grafana."
_CONDITION = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$")


def grafana_ref(name: str) -> str | None:
    """The refId a condition name `grafana.<refId>` tests; None for any other name."""
    if not name.startswith(GRAFANA_VALUE_PREFIX):
        return None
    return name[len(GRAFANA_VALUE_PREFIX) :] or None


@dataclass(frozen=True)
class Condition:
    """`> 100` on a named cost-context value."""

    context: str
    op: str
    threshold: float

    def holds(self, value: float | None) -> bool:
        # A condition on a value the alert does not carry does not match.
        if value is None or math.isnan(value):
            return False
        return _OPS[self.op](value, self.threshold)

    def __str__(self) -> str:
        return f"{self.context} {self.op} {self.threshold:g}"


def parse_condition(context: str, text: str) -> Condition:
    found = _CONDITION.match(text)
    if not found:
        raise ValueError(
            f"{text!r} is not a condition: write an operator (> >= < <= == !=) and a number, "
            "e.g. '> 100'"
        )
    return Condition(context, found.group(1), float(found.group(2)))


@dataclass(frozen=True)
class Route:
    name: str
    matchers: tuple[Matcher, ...]
    when: tuple[Condition, ...]
    to: tuple[str, ...]
    continue_: bool
    repeat_interval: float
    send_resolved: bool


@dataclass(frozen=True)
class Rules:
    """A validated rules file, ready for routing and delivery."""

    path: Path
    spec: RulesFile
    routes: tuple[Route, ...]
    default: str | None

    @property
    def destinations(self) -> Mapping[str, DestinationSpec]:
        return self.spec.destinations

    @property
    def context(self) -> Mapping[str, ContextSpec]:
        return self.spec.context

    @property
    def reports(self) -> Mapping[str, ReportSpec]:
        return self.spec.reports

    def knows_value(self, name: str) -> bool:
        """Whether `when:` (and `route --context`, rule tests) may name this value: a
        context value of the file, or a Grafana query value `grafana.<refId>`."""
        return name in self.spec.context or grafana_ref(name) is not None

    def secret_keys(self) -> dict[str, list[str]]:
        """Secret key -> the destinations that need it."""
        keys: dict[str, list[str]] = {}
        for name, dest in self.spec.destinations.items():
            for key in dest.secret_keys():
                keys.setdefault(key, []).append(name)
        return keys

    def default_route(self) -> Route | None:
        if self.default is None:
            return None
        return Route(
            name="default",
            matchers=(),
            when=(),
            to=(self.default,),
            continue_=False,
            repeat_interval=self.spec.defaults.repeat_interval,
            send_resolved=self.spec.defaults.send_resolved,
        )

    def budgets_path(self) -> Path | None:
        if self.spec.budgets is None:
            return None
        path = Path(self.spec.budgets.file)
        return path if path.is_absolute() else self.path.parent / path


class RulesError(ValueError):
    """The rules file is invalid; `problems` lists every error found, one line each."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(problems))


def load_rules(path: Path) -> Rules:
    """Read and validate a rules file; raise RulesError naming every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(path, [f"{path}: cannot read the rules file: {exc.strerror}"]) from None
    return parse_rules(text, path)


def parse_rules(text: str, path: Path) -> Rules:
    try:
        data, lines = load_located(text, path)
    except YamlError as exc:
        raise RulesError(path, [exc.problem]) from None
    if not isinstance(data, dict):
        raise RulesError(
            path, [f"{path}:1: the rules file must be a mapping with destinations and routes"]
        )
    try:
        spec = RulesFile.model_validate(data)
    except ValidationError as exc:
        raise RulesError(path, validation_problems(path, exc, lines)) from None
    problems: list[str] = []
    routes = _compile_routes(spec, path, lines, problems)
    if spec.default is not None and spec.default not in spec.destinations:
        problems.append(problem(path, lines, ("default",), _undefined(spec.default, spec)))
    for where, message in report_problems(spec.reports, spec.destinations):
        problems.append(problem(path, lines, where, message))
    if spec.budgets is not None:
        budgets = Path(spec.budgets.file)
        full = budgets if budgets.is_absolute() else path.parent / budgets
        unreadable = check_budgets_file(full)
        if unreadable:
            problems.append(problem(path, lines, ("budgets", "file"), unreadable))
    if problems:
        raise RulesError(path, problems)
    return Rules(path=path, spec=spec, routes=tuple(routes), default=spec.default)


def check_budgets_file(path: Path) -> str | None:
    """What is wrong with the budgets file, as the service would read it; None if usable."""
    try:
        read_budgets(path)
    except ValueError as exc:
        return str(exc)
    return None


def _compile_routes(spec: RulesFile, path: Path, lines: Lines, problems: list[str]) -> list[Route]:
    routes: list[Route] = []
    seen: set[str] = set()
    for i, route in enumerate(spec.routes):
        where: tuple[Any, ...] = ("routes", i)
        if route.name in seen:
            problems.append(
                problem(path, lines, (*where, "name"), f"route name {route.name!r} is used twice")
            )
        seen.add(route.name)
        matchers: list[Matcher] = []
        for j, text in enumerate(route.matchers):
            try:
                matchers.append(parse_matcher(text))
            except MatcherError as exc:
                problems.append(problem(path, lines, (*where, "matchers", j), str(exc)))
        conditions: list[Condition] = []
        for name, text in route.when.items():
            if name == GRAFANA_VALUE_PREFIX:
                problems.append(
                    problem(
                        path,
                        lines,
                        (*where, "when", name),
                        "name the query of the Grafana alert rule: grafana.<refId>, e.g. grafana.A",
                    )
                )
                continue
            if name not in spec.context and grafana_ref(name) is None:
                known = ", ".join(sorted(spec.context)) or "none defined"
                problems.append(
                    problem(
                        path,
                        lines,
                        (*where, "when", name),
                        f"unknown context value {name!r}: define it under context "
                        f"(defined: {known})",
                    )
                )
                continue
            try:
                conditions.append(parse_condition(name, text))
            except ValueError as exc:
                problems.append(problem(path, lines, (*where, "when", name), str(exc)))
        for j, dest in enumerate(route.to):
            if dest not in spec.destinations:
                problems.append(problem(path, lines, (*where, "to", j), _undefined(dest, spec)))
        routes.append(
            Route(
                name=route.name,
                matchers=tuple(matchers),
                when=tuple(conditions),
                to=tuple(route.to),
                continue_=route.continue_,
                repeat_interval=(
                    route.repeat_interval
                    if route.repeat_interval is not None
                    else spec.defaults.repeat_interval
                ),
                send_resolved=(
                    route.send_resolved
                    if route.send_resolved is not None
                    else spec.defaults.send_resolved
                ),
            )
        )
    return routes


def _undefined(name: str, spec: RulesFile) -> str:
    known = ", ".join(sorted(spec.destinations))
    return f"destination {name!r} is not defined: add it under destinations or use one of: {known}"
