"""`alert-router test FILE`: unit tests for routing rules, cost conditions included.

A test file lists alerts with canned cost context and where they must go:

    tests:
      - name: an expensive GPU service pages on-call
        alert:
          labels: {alertname: HighGPUCost, service: whisper, severity: warning}
        context: {cost_per_hour: 120}     # a Grafana alert's query values: grafana.A: 61.5
        expect:
          destinations: [oncall, finops-slack]
          routes: [expensive-page, cost]        # optional: the routes matched, in order

Destinations compare as a set; routes in order (the first match decides). The file is
validated whole, like the rules: unknown keys are rejected and every error names the
file, the line and the path inside the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from receiver.config.located import YamlError, load_located, problem, validation_problems
from receiver.config.rules import Rules
from receiver.routing.routes import matching_routes, route_alert


class RuleTestError(ValueError):
    """The test file is malformed; `problems` has one `file:line: path: problem` each."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _TestAlert(_Strict):
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    status: Literal["firing", "resolved"] = "firing"

    @field_validator("labels")
    @classmethod
    def _has_name(cls, labels: dict[str, str]) -> dict[str, str]:
        if not labels.get("alertname"):
            raise ValueError("labels must include a non-empty alertname")
        return labels


class _Expect(_Strict):
    destinations: list[str] | None = None
    routes: list[str] | None = None

    @model_validator(mode="after")
    def _something(self) -> _Expect:
        if self.destinations is None and self.routes is None:
            raise ValueError("expect needs destinations, routes or both")
        return self


class _TestCase(_Strict):
    name: str = Field(min_length=1)
    alert: _TestAlert
    context: dict[str, float] = Field(default_factory=dict)
    expect: _Expect


class _TestFile(_Strict):
    tests: list[_TestCase] = Field(min_length=1)


@dataclass(frozen=True)
class CaseResult:
    """One test: what routing did, and each way it differs from the expectation."""

    name: str
    destinations: tuple[str, ...]
    routes: tuple[str, ...]
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class RuleTestReport:
    """The results of one test file against one rules file."""

    path: Path
    rules_path: Path
    cases: tuple[CaseResult, ...]

    @property
    def passed(self) -> bool:
        return all(case.passed for case in self.cases)

    def render(self) -> str:
        failed = sum(not case.passed for case in self.cases)
        lines = []
        for case in self.cases:
            lines.append(f"{'ok  ' if case.passed else 'FAIL'}  {case.name}")
            for failure in case.failures:
                lines.append(f"        {failure}")
        verdict = "passed" if not failed else f"{failed} failed"
        count = f"{len(self.cases)} test{'s' if len(self.cases) != 1 else ''}"
        lines.append(f"{self.path} against {self.rules_path}: {count}, {verdict}")
        return "\n".join(lines)


def run_rule_tests(test_file: Path, rules: Rules) -> RuleTestReport:
    """Route every test alert with its canned context; RuleTestError if the file is malformed."""
    spec = _load(test_file, rules)
    cases = []
    for case in spec.tests:
        labels = case.alert.labels
        routes = tuple(route.name for route in matching_routes(rules, labels, case.context))
        destinations = tuple(
            target.destination for target in route_alert(rules, labels, case.context)
        )
        failures = []
        want = case.expect.destinations
        if want is not None and set(want) != set(destinations):
            unknown = sorted(set(want) - set(rules.destinations))
            hint = f" ({', '.join(unknown)} not defined in the rules)" if unknown else ""
            failures.append(
                f"destinations: expected {_list(sorted(set(want)))}, "
                f"got {_list(sorted(destinations))}{hint}"
            )
        if case.expect.routes is not None and list(case.expect.routes) != list(routes):
            failures.append(f"routes: expected {_list(case.expect.routes)}, got {_list(routes)}")
        cases.append(CaseResult(case.name, destinations, routes, tuple(failures)))
    return RuleTestReport(test_file, rules.path, tuple(cases))


def _load(test_file: Path, rules: Rules) -> _TestFile:
    """Read and validate a test file; context names must be defined in the rules."""
    try:
        text = test_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleTestError(test_file, [f"{test_file}: cannot read: {exc.strerror}"]) from None
    try:
        data, lines = load_located(text, test_file)
    except YamlError as exc:
        raise RuleTestError(test_file, [exc.problem]) from None
    if not isinstance(data, dict):
        raise RuleTestError(test_file, [f"{test_file}:1: a test file is a mapping with `tests:`"])
    try:
        spec = _TestFile.model_validate(data)
    except ValidationError as exc:
        problems = validation_problems(test_file, exc, lines)
        raise RuleTestError(test_file, problems) from None
    problems = []
    seen: set[str] = set()
    for i, case in enumerate(spec.tests):
        if case.name in seen:
            problems.append(
                problem(
                    test_file, lines, ("tests", i, "name"), f"test name {case.name!r} is used twice"
                )
            )
        seen.add(case.name)
        for name in case.context:
            if not rules.knows_value(name):
                known = ", ".join(sorted(rules.context)) or "none defined"
                problems.append(
                    problem(
                        test_file,
                        lines,
                        ("tests", i, "context", name),
                        f"unknown context value {name!r}: the rules define {known} "
                        "(a Grafana query value is grafana.<refId>)",
                    )
                )
    if problems:
        raise RuleTestError(test_file, problems)
    return spec


def _list(items: Any) -> str:
    return "[" + ", ".join(items) + "]"
