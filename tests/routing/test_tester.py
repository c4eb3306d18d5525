"""The route tester says what `alert-router route` prints, line for line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from receiver.config.rules import Rules, load_rules
from receiver.routing.tester import parse_context, route_report

RULES = Path("rules/routes.yaml")


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules(RULES)


def cli_route(labels: list[str], context: list[str]) -> list[str]:
    args = [sys.executable, "-m", "receiver", "route", "--config", str(RULES), *labels]
    for item in context:
        args += ["--context", item]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERT_ROUTER_")}
    result = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


CASES = [
    # Paged and posted by the label route.
    (["alertname=BudgetThresholdExceeded", "severity=critical"], []),
    # Money over the threshold: the paging route, with the value compared.
    (["alertname=HighGPUCost", "service=x"], ["cost_per_hour=120"]),
    # Money under it: the route that matched the labels but not the money is named.
    (["alertname=HighGPUCost", "service=x"], ["cost_per_hour=80"]),
    # No value at all: the hint names the flag to pass.
    (["alertname=HighGPUCost"], []),
    # Nothing matches: the default.
    (["alertname=SomethingElse"], []),
]


@pytest.mark.parametrize(("labels", "context"), CASES)
def test_the_report_is_what_the_cli_prints(
    rules: Rules, labels: list[str], context: list[str]
) -> None:
    label_map = dict(item.split("=", 1) for item in labels)
    values = parse_context(rules, dict(item.split("=", 1) for item in context))
    assert route_report(rules, label_map, values) == cli_route(labels, context)


def test_an_unmet_money_condition_is_explained(rules: Rules) -> None:
    lines = route_report(rules, {"alertname": "HighGPUCost"}, {"cost_per_hour": 80.0})
    assert any(
        "matches the labels but not cost_per_hour > 100 (value 80)" in line for line in lines
    )


def test_context_values_are_checked(rules: Rules) -> None:
    with pytest.raises(ValueError, match="unknown context value 'nonsense' \\(defined: "):
        parse_context(rules, {"nonsense": "1"})
    with pytest.raises(ValueError, match="context value cost_per_hour='lots' is not a number"):
        parse_context(rules, {"cost_per_hour": "lots"})
    assert parse_context(rules, {"cost_per_hour": "61.5"}) == {"cost_per_hour": 61.5}
