"""`alert-router test FILE`: rule test files passing, failing and malformed."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.config.rules import Rules, load_rules
from receiver.routing.ruletest import RuleTestError, run_rule_tests

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
CASES = DATA / "ruletest"


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules(ROOT / "rules" / "routes.yaml")


def test_shipped_example_passes_against_shipped_rules(rules: Rules) -> None:
    report = run_rule_tests(DATA / "routes-test.yaml", rules)
    assert report.passed, report.render()
    assert len(report.cases) == 8
    assert report.render().endswith("8 tests, passed")


def test_failing_file_reports_each_difference(rules: Rules) -> None:
    report = run_rule_tests(CASES / "failing.yaml", rules)
    assert not report.passed
    assert [case.passed for case in report.cases] == [True, False, False]
    cheap, wrong = report.cases[1], report.cases[2]
    assert cheap.destinations == ("finops-slack",)
    assert cheap.failures == ("destinations: expected [oncall], got [finops-slack]",)
    assert wrong.failures == (
        "destinations: expected [finops-bot, oncall], got [finops-slack, oncall]"
        " (finops-bot not defined in the rules)",
        "routes: expected [budget], got [budget-page]",
    )
    text = report.render()
    assert "ok    passes" in text
    assert "FAIL  expects a page that the cost does not justify" in text
    assert text.endswith("3 tests, 2 failed")


def test_the_context_decides_the_route(rules: Rules, tmp_path: Path) -> None:
    # The same alert, once under and once over the `when: cost_per_hour > 100` threshold.
    test_file = tmp_path / "money.yaml"
    test_file.write_text(
        """
tests:
  - name: cheap
    alert: {labels: {alertname: HighCostPerJob, service: s}}
    context: {cost_per_hour: 100}
    expect: {destinations: [finops-slack], routes: [cost]}
  - name: dear
    alert: {labels: {alertname: HighCostPerJob, service: s}}
    context: {cost_per_hour: 100.01}
    expect: {destinations: [oncall, finops-slack], routes: [expensive-page, cost]}
""",
        encoding="utf-8",
    )
    report = run_rule_tests(test_file, rules)
    assert report.passed, report.render()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        # Unknown keys are rejected, with the line of the key.
        (
            "unknown-key",
            "unknown-key.yaml:6: tests[0].expect.destination: unknown key 'destination'",
        ),
        ("missing-name", "missing-name.yaml:2: tests[0]: missing required key 'name'"),
        (
            "no-alertname",
            "no-alertname.yaml:4: tests[0].alert.labels: labels must include a non-empty alertname",
        ),
        # Context names must exist in the rules: a typo would silently never match.
        (
            "unknown-context",
            "unknown-context.yaml:6: tests[0].context.cost_per_hr: unknown context value "
            "'cost_per_hr': the rules define budget_used, ",
        ),
        ("not-yaml", "not-yaml.yaml:4: not valid YAML: "),
        ("no-tests", "no-tests.yaml:1: tests: 'tests' must not be empty"),
        ("duplicate-name", "duplicate-name.yaml:5: tests[1].name: test name 'same' is used twice"),
        ("bad-status", "bad-status.yaml:5: tests[0].alert.status: Input should be 'firing' or"),
        (
            "empty-expect",
            "empty-expect.yaml:4: tests[0].expect: expect needs destinations, routes or both",
        ),
        (
            "bad-context-value",
            "bad-context-value.yaml:4: tests[0].context.cost_per_hour: Input should be a valid",
        ),
    ],
)
def test_malformed_file_names_file_line_and_path(rules: Rules, name: str, message: str) -> None:
    path = CASES / f"{name}.yaml"
    with pytest.raises(RuleTestError) as raised:
        run_rule_tests(path, rules)
    assert raised.value.path == path
    assert len(raised.value.problems) == 1, raised.value.problems
    assert raised.value.problems[0].startswith(f"{CASES}/"), raised.value.problems[0]
    assert message in raised.value.problems[0]


def test_missing_file_is_an_error(rules: Rules, tmp_path: Path) -> None:
    with pytest.raises(RuleTestError, match=r"nope\.yaml: cannot read"):
        run_rule_tests(tmp_path / "nope.yaml", rules)


def test_a_list_is_not_a_test_file(rules: Rules, tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- name: x\n", encoding="utf-8")
    with pytest.raises(RuleTestError, match=r"list\.yaml:1: a test file is a mapping"):
        run_rule_tests(path, rules)
