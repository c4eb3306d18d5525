"""Routing as a table: matchers, anchoring, continue, default and cost conditions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from receiver.config.rules import Rules, parse_rules
from receiver.matchers import MatcherError, parse_matcher
from receiver.models import Alert
from receiver.routing.routes import choose, resolve_targets, route_alert

RULES = """
destinations:
  slack: {slack: {webhook_url: {secret: slack-webhook-url}}}
  pager: {pagerduty: {routing_key: {secret: pagerduty-key}}}
  bot: {slack: {token: {secret: slack-bot-token}, channel: "#gpu-costs"}}
context:
  cost_per_hour: {query: 'sum by (service) (service_cost_per_hour)', unit: usd_per_hour}
routes:
  - name: budget-page
    matchers: ['alertname="BudgetThresholdExceeded"', 'severity="critical"']
    to: [pager, slack]
  - name: expensive
    matchers: ['alertname=~"HighGPUCost|HighCostPerJob"']
    when: {cost_per_hour: "> 100"}
    to: [pager]
    continue: true
  - name: cost
    matchers: ['alertname=~"HighGPUCost|HighCostPerJob"']
    to: [bot]
  - name: not-prod
    matchers: ['env!="prod"', 'alertname="EnvCheck"']
    to: [bot]
  - name: no-staging
    matchers: ['env!~"stag.*"', 'alertname="EnvRegex"']
    to: [pager]
default: slack
"""


@pytest.fixture(scope="module")
def rules() -> Rules:
    return parse_rules(RULES, Path("routes.yaml"))


CASES = [
    # Both matchers hold: first match wins, no continue, two destinations in order.
    ({"alertname": "BudgetThresholdExceeded", "severity": "critical"}, {}, ["pager", "slack"]),
    # One matcher fails: nothing matches, so the default takes it.
    ({"alertname": "BudgetThresholdExceeded", "severity": "warning"}, {}, ["slack"]),
    # Money over the threshold: paged, and continue reaches the next route too.
    ({"alertname": "HighGPUCost"}, {"cost_per_hour": 120.0}, ["pager", "bot"]),
    # Money under the threshold: only the label route.
    ({"alertname": "HighGPUCost"}, {"cost_per_hour": 80.0}, ["bot"]),
    # No context value: the condition does not match.
    ({"alertname": "HighCostPerJob"}, {}, ["bot"]),
    # The boundary: "> 100" is strict.
    ({"alertname": "HighGPUCost"}, {"cost_per_hour": 100.0}, ["bot"]),
    # Regexes are anchored: a longer name does not match "HighGPUCost".
    ({"alertname": "HighGPUCostly"}, {"cost_per_hour": 500.0}, ["slack"]),
    ({"alertname": "XHighGPUCost"}, {}, ["slack"]),
    # != matches a missing label (the empty string), like Alertmanager.
    ({"alertname": "EnvCheck"}, {}, ["bot"]),
    ({"alertname": "EnvCheck", "env": "prod"}, {}, ["slack"]),
    # !~ is anchored too: "staging" is excluded, "prestaging" is not.
    ({"alertname": "EnvRegex", "env": "staging"}, {}, ["slack"]),
    ({"alertname": "EnvRegex", "env": "prestaging"}, {}, ["pager"]),
    # Anything else goes to the default destination.
    ({"alertname": "Unrelated"}, {}, ["slack"]),
]


@pytest.mark.parametrize(("labels", "context", "expected"), CASES)
def test_routes(
    rules: Rules, labels: dict[str, str], context: dict[str, float], expected: list[str]
) -> None:
    assert [t.destination for t in route_alert(rules, labels, context)] == expected


def test_route_settings_come_from_the_first_route(rules: Rules) -> None:
    [pager, _] = route_alert(
        rules, {"alertname": "BudgetThresholdExceeded", "severity": "critical"}, {}
    )
    assert pager.route.name == "budget-page"
    assert pager.route.repeat_interval == 4 * 3600
    assert pager.route.send_resolved is True


def test_no_default_means_no_destination() -> None:
    rules = parse_rules(
        "destinations: {s: {slack: {webhook_url: {secret: k}}}}\n"
        "routes: [{name: r, matchers: ['a=\"b\"'], to: [s]}]\n",
        Path("r.yaml"),
    )
    assert route_alert(rules, {"alertname": "X"}, {}) == []


def test_repeat_interval_and_send_resolved_per_route() -> None:
    rules = parse_rules(
        "destinations: {s: {slack: {webhook_url: {secret: k}}}}\n"
        "defaults: {repeat_interval: 2h}\n"
        "routes:\n"
        "  - {name: a, matchers: ['x=\"1\"'], to: [s],\n"
        "     repeat_interval: 12h, send_resolved: false}\n"
        "  - {name: b, to: [s]}\n",
        Path("r.yaml"),
    )
    assert rules.routes[0].repeat_interval == 12 * 3600
    assert rules.routes[0].send_resolved is False
    assert rules.routes[1].repeat_interval == 2 * 3600
    assert rules.routes[1].send_resolved is True


MATCHERS = [
    ('severity="critical"', {"severity": "critical"}, True),
    ("severity=critical", {"severity": "critical"}, True),
    ('severity = "critical"', {"severity": "critical"}, True),
    ('severity!="critical"', {"severity": "warning"}, True),
    ('severity=~"crit.*"', {"severity": "critical"}, True),
    ('severity=~"crit"', {"severity": "critical"}, False),  # anchored
    ('severity!~"crit.*"', {"severity": "critical"}, False),
    ('summary="say \\"hi\\""', {"summary": 'say "hi"'}, True),
    ('team=""', {}, True),  # empty value matches a missing label
]


@pytest.mark.parametrize(("text", "labels", "expected"), MATCHERS)
def test_matchers(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(text).matches(labels) is expected


@pytest.mark.parametrize(
    "text", ["severity", '="x"', 'a=="b"', 'a="b', 'a=~"("', '1a="b"', 'a="b"c"']
)
def test_bad_matchers(text: str) -> None:
    with pytest.raises(MatcherError):
        parse_matcher(text)


def test_resolve_targets_ignore_money_and_first_match(rules: Rules) -> None:
    # Fired at $120/h: paged through `expensive` and posted through `cost`. At resolve the
    # cost is down, but the resolve must still reach the pager that got the firing.
    firing = route_alert(rules, {"alertname": "HighGPUCost"}, {"cost_per_hour": 120.0})
    assert [t.destination for t in firing] == ["pager", "bot"]
    later = route_alert(rules, {"alertname": "HighGPUCost"}, {"cost_per_hour": 10.0})
    assert [t.destination for t in later] == ["bot"]
    candidates = resolve_targets(rules, {"alertname": "HighGPUCost"})
    assert [t.destination for t in candidates] == ["pager", "bot", "slack"]
    assert candidates[0].route.name == "expensive"


def _alert(status: str, **labels: str) -> Alert:
    return Alert(
        fingerprint="f1",
        status=status,
        labels=labels,
        annotations={},
        starts_at=datetime(2026, 12, 4, tzinfo=UTC),
        ends_at=datetime(2026, 12, 4, 1, tzinfo=UTC) if status == "resolved" else None,
    )


def test_a_firing_choice_keeps_every_deciding_route_and_the_numbers_compared(
    rules: Rules,
) -> None:
    alert = _alert("firing", alertname="HighGPUCost")
    choice = choose(rules, alert, {"cost_per_hour": 120.0})
    # `expensive` continues into `cost`: both decided, and the pager got its settings
    # from the first route that named it.
    assert [r.name for r in choice.routes] == ["expensive", "cost"]
    assert choice.values == {"cost_per_hour": 120.0}
    assert [(t.destination, t.route.name) for t in choice.targets] == [
        ("pager", "expensive"),
        ("bot", "cost"),
    ]
    assert list(choice.targets) == route_alert(rules, alert.labels, {"cost_per_hour": 120.0})


def test_a_resolve_choice_is_every_route_its_firing_may_have_taken(rules: Rules) -> None:
    alert = _alert("resolved", alertname="HighGPUCost")
    choice = choose(rules, alert, {"cost_per_hour": 10.0})
    # The money no longer decides: no numbers were compared.
    assert choice.values == {}
    assert [r.name for r in choice.routes] == ["expensive", "cost", "default"]
    assert list(choice.targets) == resolve_targets(rules, alert.labels)


def test_format_time_pads_the_year() -> None:
    from datetime import UTC, datetime

    from receiver.models import format_time

    assert format_time(datetime(999, 6, 1, tzinfo=UTC)) == "0999-06-01T00:00:00.000Z"
    assert datetime.fromisoformat(format_time(datetime(5, 1, 2, tzinfo=UTC))).year == 5
