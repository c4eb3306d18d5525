"""Each broken rules file under testdata/ and the exact message it must produce
(Alertmanager's config/testdata habit): file, line, path inside the file, and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.config.rules import RulesError, check_budgets_file, load_rules
from receiver.context.budgets import Budgets

DATA = Path(__file__).parent / "testdata"

CASES = [
    # A misspelt key is rejected, not ignored.
    (
        "unknown_key.yaml",
        "7: routes[0].repeat_intervall: unknown key 'repeat_intervall': "
        "remove it or check its spelling",
    ),
    # A route naming a destination that does not exist.
    (
        "undefined_destination.yaml",
        "5: routes[0].to[0]: destination 'pager' is not defined: "
        "add it under destinations or use one of: s",
    ),
    (
        "undefined_default.yaml",
        "3: default: destination 'nowhere' is not defined: "
        "add it under destinations or use one of: s",
    ),
    (
        "bad_regex.yaml",
        "5: routes[0].matchers[0]: 'alertname=~\"High(GPU\"' has an invalid regex: "
        "missing ), unterminated subpattern at position 0",
    ),
    (
        "bad_matcher.yaml",
        "5: routes[0].matchers[0]: 'alertname HighGPUCost' is not a matcher: "
        'write name="value" with one of = != =~ !~',
    ),
    (
        "bad_duration.yaml",
        "6: routes[0].repeat_interval: '4 hours' is not a duration: "
        "use e.g. 30s, 5m, 4h, 1d or 1h30m",
    ),
    (
        "bad_condition.yaml",
        "8: routes[0].when.cost_per_hour: 'more than 100' is not a condition: "
        "write an operator (> >= < <= == !=) and a number, e.g. '> 100'",
    ),
    # `when` may only test context values the file defines.
    (
        "unknown_context.yaml",
        "6: routes[0].when.cost_per_hour: unknown context value 'cost_per_hour': "
        "define it under context (defined: none defined)",
    ),
    (
        "slack_both.yaml",
        "3: destinations.s.slack: set exactly one of webhook_url or token (with channel)",
    ),
    (
        "slack_token_no_channel.yaml",
        "3: destinations.s.slack: a token destination needs channel, e.g. channel: '#gpu-costs'",
    ),
    (
        "destination_two_kinds.yaml",
        "2: destinations.s: a destination is exactly one of slack or pagerduty",
    ),
    ("no_destinations.yaml", "1: (top level): missing required key 'destinations'"),
    (
        "bad_unit.yaml",
        "4: context.cost.unit: Input should be 'usd', 'usd_per_hour', 'percent', 'ratio', "
        "'count' or 'timestamp'",
    ),
    ("duplicate_route.yaml", "5: routes[1].name: route name 'r' is used twice"),
    ("bad_yaml.yaml", "3: not valid YAML: expected ',' or '}', but got '<scalar>'"),
    (
        "bad_severity.yaml",
        "2: destinations.p.pagerduty.default_severity: "
        "Input should be 'critical', 'error', 'warning' or 'info'",
    ),
    ("not_a_mapping.yaml", "1: the rules file must be a mapping with destinations and routes"),
    (
        "incident_cost_unit.yaml",
        "4: context.budget: incident_cost needs unit usd_per_hour (it integrates $/hour)",
    ),
    # Grafana's HMAC headers: real header names, two of them, none the endpoint reads.
    (
        "grafana_bad_header.yaml",
        "5: grafana.hmac.signature_header: 'X Grafana Signature' is not an HTTP header name: "
        "letters, digits and dashes, e.g. X-Grafana-Alerting-Signature",
    ),
    (
        "grafana_same_header.yaml",
        "4: grafana.hmac: signature_header and timestamp_header must be two headers",
    ),
    (
        "grafana_reserved_header.yaml",
        "4: grafana.hmac: Authorization carries something else: name another header",
    ),
    # Grafana's contact point says `header`; the rules file says which header it is.
    (
        "grafana_unknown_key.yaml",
        "5: grafana.hmac.header: unknown key 'header': remove it or check its spelling",
    ),
    # A `when` on a Grafana value names its query's refId.
    (
        "grafana_no_ref.yaml",
        "6: routes[0].when.grafana.: name the query of the Grafana alert rule: "
        "grafana.<refId>, e.g. grafana.A",
    ),
    # `reports:`: a zone Python's tz database knows, a cron that parses, sections that
    # exist, and Slack destinations that exist (PagerDuty cannot carry a report).
    (
        "report_unknown_timezone.yaml",
        "7: reports.daily.timezone: unknown timezone 'Europe/Berln': use an IANA name such as "
        "Europe/Berlin, America/New_York or UTC",
    ),
    (
        "report_bad_cron.yaml",
        "6: reports.daily.schedule: cron hour '25' is not valid: use *, a number 0-23, "
        "a range (1-5), a list (1,3) or a step (*/15)",
    ),
    (
        "report_unknown_section.yaml",
        "7: reports.daily.sections: unknown section 'wastes': use one of spend, waste, "
        "budgets, changes, incidents",
    ),
    (
        "report_pagerduty.yaml",
        "6: reports.daily.to[1]: destination 'p' is PagerDuty: reports go to Slack only "
        "(use one of: s)",
    ),
    (
        "report_undefined_destination.yaml",
        "5: reports.daily.to[0]: destination 'finops-bot' is not defined: use a Slack one (s)",
    ),
]


@pytest.mark.parametrize(("name", "expected"), CASES, ids=[c[0] for c in CASES])
def test_error_message(name: str, expected: str) -> None:
    path = DATA / name
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    assert caught.value.problems == [f"{path}:{expected}"]


def test_missing_budgets_file_names_the_file() -> None:
    path = DATA / "missing_budgets_file.yaml"
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    [problem] = caught.value.problems
    assert problem.startswith(f"{path}:3: budgets.file: cannot read budgets file ")
    assert "no-such-cost_allocation.json" in problem


def test_boolean_budget_is_refused_where_the_service_refuses_it() -> None:
    # JSON `true` is a Python int: `check` once accepted it and `serve` then ran without
    # budgets. Both read the file with receiver.config.budgets.parse_budgets now.
    path = DATA / "budget_monthly_bool.yaml"
    budgets = DATA / "budget_monthly_bool.json"
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    assert caught.value.problems == [
        f"{path}:3: budgets.file: budgets file {budgets}: "
        "'whisper-pyannote-stt' needs a numeric budget_monthly"
    ]
    served = Budgets(budgets)
    assert len(served) == 0
    assert served.error == (
        f"budgets file {budgets}: 'whisper-pyannote-stt' needs a numeric budget_monthly"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        # Accepted by both.
        ('{"a": {"budget_monthly": 100}}', None),
        ('{"a": {"budget_monthly": 1.5e3, "alert_threshold": 0.8}}', None),
        # Refused by both, each for the same reason.
        ('{"a": {"budget_monthly": "100"}}', "'a' needs a numeric budget_monthly"),
        ('{"a": {"budget_monthly": false}}', "'a' needs a numeric budget_monthly"),
        ('{"a": {"budget_monthly": NaN}}', "'a' needs a numeric budget_monthly"),
        ('{"a": {"budget_monthly": 1, "alert_threshold": true}}', "alert_threshold"),
        ('{"a": 3}', "'a' needs a numeric budget_monthly"),
        ("[1]", "must map service names"),
        ("{", "is not JSON"),
    ],
)
def test_check_and_serve_accept_the_same_budgets(
    tmp_path: Path, text: str, problem: str | None
) -> None:
    path = tmp_path / "cost_allocation.json"
    path.write_text(text)
    checked = check_budgets_file(path)
    served = Budgets(path)
    if problem is None:
        assert checked is None
        assert served.error is None
        assert len(served) == 1
    else:
        assert checked is not None and problem in checked
        assert served.error == checked
        assert len(served) == 0


def test_every_testdata_file_has_a_case() -> None:
    covered = {name for name, _ in CASES} | {
        "missing_budgets_file.yaml",
        "budget_monthly_bool.yaml",
    }
    assert covered == {p.name for p in DATA.glob("*.yaml")}


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(
        "destinations:\n"
        "  s: {slack: {webhook_url: {secret: k}}}\n"
        "routes:\n"
        "  - {name: a, to: [x]}\n"
        "  - {name: b, to: [s], matchers: ['bad']}\n"
        "default: y\n"
    )
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    assert len(caught.value.problems) == 3


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    assert caught.value.problems == [
        f"{path}: cannot read the rules file: No such file or directory"
    ]


def test_shipped_rules_are_valid() -> None:
    rules = load_rules(Path("rules/routes.yaml"))
    assert {"finops-slack", "oncall"} <= set(rules.destinations)
    assert rules.default == "finops-slack"
