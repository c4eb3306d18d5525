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
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from receiver.config.budgets import read_budgets
from receiver.config.durations import parse_duration
from receiver.config.located import Lines, YamlError, load_located, problem, validation_problems
from receiver.matchers import Matcher, MatcherError, parse_matcher
from receiver.models import Unit

DEFAULT_REPEAT_INTERVAL = 4 * 3600.0
_KEY_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


def _duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m or 4h")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError("expected a duration such as 30s, 5m or 4h")


Duration = Annotated[float, BeforeValidator(_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SecretRef(_Strict):
    """A key of the `alert-secrets` Secret: `{secret: pagerduty-key}`."""

    secret: str = Field(pattern=_KEY_NAME)


DEFAULT_SILENCE_DURATIONS = (3600.0, 4 * 3600.0, 24 * 3600.0)
# Our own bound: the buttons must stay one readable row (Slack allows 25 per actions block).
MAX_SILENCE_BUTTONS = 5


class SlackSpec(_Strict):
    webhook_url: SecretRef | None = None
    token: SecretRef | None = None
    channel: str | None = None
    # Slack: "1 message per second per channel" for incoming webhooks and chat.postMessage.
    max_per_second: float = Field(default=1.0, ge=0)
    # Buttons on the firing messages of a bot (token) destination: silence in Alertmanager
    # (needs `alertmanager.url`) and acknowledge in PagerDuty. Incoming webhooks cannot
    # carry buttons that work, so neither key is allowed there.
    buttons: bool | None = None
    silence_durations: list[Duration] | None = None

    @model_validator(mode="after")
    def _one_way(self) -> SlackSpec:
        if (self.webhook_url is None) == (self.token is None):
            raise ValueError("set exactly one of webhook_url or token (with channel)")
        if self.token is not None and not self.channel:
            raise ValueError("a token destination needs channel, e.g. channel: '#gpu-costs'")
        if self.webhook_url is not None and (
            self.buttons is not None or self.silence_durations is not None
        ):
            raise ValueError(
                "buttons and silence_durations need a bot destination (token and channel): "
                "incoming-webhook messages keep the silence link"
            )
        return self

    @field_validator("silence_durations")
    @classmethod
    def _durations(cls, value: list[float] | None) -> list[float] | None:
        if value is None:
            return None
        if len(value) > MAX_SILENCE_BUTTONS:
            raise ValueError(f"at most {MAX_SILENCE_BUTTONS} silence durations")
        if any(seconds < 60 for seconds in value):
            raise ValueError("a silence lasts at least 1m")
        if len(set(value)) != len(value):
            raise ValueError("each silence duration once")
        return value

    @property
    def buttons_on(self) -> bool:
        """Whether firing messages carry buttons: bot destinations, unless turned off."""
        return self.token is not None and self.buttons is not False

    @property
    def silence_buttons(self) -> tuple[float, ...]:
        """Durations of the silence buttons, in seconds (none for incoming webhooks)."""
        if not self.buttons_on:
            return ()
        if self.silence_durations is None:
            return DEFAULT_SILENCE_DURATIONS
        return tuple(self.silence_durations)


Severity = Literal["critical", "error", "warning", "info"]


class PagerDutySpec(_Strict):
    routing_key: SecretRef
    default_severity: Severity = "warning"
    # PagerDuty Events API v2: about 120 events per minute per routing key.
    max_per_minute: float = Field(default=120.0, ge=0)


class DestinationSpec(_Strict):
    slack: SlackSpec | None = None
    pagerduty: PagerDutySpec | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> DestinationSpec:
        if (self.slack is None) == (self.pagerduty is None):
            raise ValueError("a destination is exactly one of slack or pagerduty")
        return self

    def secret_keys(self) -> list[str]:
        keys: list[str] = []
        if self.slack is not None:
            ref = self.slack.webhook_url or self.slack.token
            assert ref is not None
            keys.append(ref.secret)
        if self.pagerduty is not None:
            keys.append(self.pagerduty.routing_key.secret)
        return keys


class PrometheusSpec(_Strict):
    url: str = "http://localhost:9090"
    timeout: Duration = 2.0
    cache_ttl: Duration = 30.0


class AlertmanagerSpec(_Strict):
    url: str
    # Silences are created while Slack waits for its answer (Slack: within 3 seconds).
    timeout: Duration = Field(default=2.0, gt=0)


class ContextSpec(_Strict):
    """A named cost-context value: a PromQL instant query joined to alerts on labels."""

    query: str = Field(min_length=1)
    unit: Unit
    title: str | None = None
    # Alert label -> result label, where the names differ (alert `Hostname` is the
    # cost exporter's `node`). Other shared label names join as they are.
    join: dict[str, str] = Field(default_factory=dict)
    # For a $/hour value: at resolve, what the episode cost between startsAt and endsAt.
    incident_cost: bool = False

    @model_validator(mode="after")
    def _incident_needs_rate(self) -> ContextSpec:
        if self.incident_cost and self.unit is not Unit.USD_PER_HOUR:
            raise ValueError("incident_cost needs unit usd_per_hour (it integrates $/hour)")
        return self

    @property
    def display_title(self) -> str:
        return self.title or ""


class BudgetsSpec(_Strict):
    """The platform's `cost_allocation.json`: {service: {budget_monthly, alert_threshold}}."""

    file: str
    service_label: str = "service"


class RouteDefaults(_Strict):
    repeat_interval: Duration = DEFAULT_REPEAT_INTERVAL
    send_resolved: bool = True


class RouteSpec(_Strict):
    name: str = Field(min_length=1)
    matchers: list[str] = Field(default_factory=list)
    when: dict[str, str] = Field(default_factory=dict)
    to: list[str] = Field(min_length=1)
    continue_: bool = Field(default=False, alias="continue")
    repeat_interval: Duration | None = None
    send_resolved: bool | None = None


class RulesFile(_Strict):
    prometheus: PrometheusSpec = Field(default_factory=PrometheusSpec)
    alertmanager: AlertmanagerSpec | None = None
    destinations: dict[str, DestinationSpec] = Field(min_length=1)
    context: dict[str, ContextSpec] = Field(default_factory=dict)
    budgets: BudgetsSpec | None = None
    defaults: RouteDefaults = Field(default_factory=RouteDefaults)
    routes: list[RouteSpec] = Field(default_factory=list)
    default: str | None = None


_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_CONDITION = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$")


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
            if name not in spec.context:
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
