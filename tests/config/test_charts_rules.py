"""`charts:` on a destination: a bot destination may ask for alert charts; an incoming
webhook and PagerDuty cannot carry files, and each refusal says so at its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.config.rules import RulesError, load_rules, parse_rules

DATA = Path(__file__).parent / "charts_testdata"

CASES = [
    # An incoming webhook cannot upload files.
    (
        "charts_webhook.yaml",
        "3: destinations.s.slack: charts need a bot destination (token and channel): "
        "incoming webhooks cannot upload files",
    ),
    # PagerDuty events carry no files: refused with that reason, not "check its spelling".
    (
        "charts_pagerduty.yaml",
        "5: destinations.p.pagerduty.charts: charts are uploaded to Slack bot destinations "
        "only: PagerDuty events carry no files (remove charts here)",
    ),
    (
        "charts_not_bool.yaml",
        "6: destinations.b.slack.charts: Input should be a valid boolean, unable to interpret "
        "input",
    ),
]


@pytest.mark.parametrize(("name", "expected"), CASES, ids=[c[0] for c in CASES])
def test_error_message(name: str, expected: str) -> None:
    path = DATA / name
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    assert caught.value.problems == [f"{path}:{expected}"]


def test_every_testdata_file_has_a_case() -> None:
    assert {name for name, _ in CASES} == {p.name for p in DATA.glob("*.yaml")}


@pytest.mark.parametrize(
    ("slack", "charts"),
    [
        # Off unless asked for.
        ("{token: {secret: t}, channel: '#c'}", False),
        ("{token: {secret: t}, channel: '#c', charts: true}", True),
        ("{token: {secret: t}, channel: '#c', charts: false}", False),
        # Saying false on an incoming webhook is harmless, so it is allowed.
        ("{webhook_url: {secret: w}, charts: false}", False),
    ],
)
def test_charts_are_off_unless_a_bot_destination_asks(slack: str, charts: bool) -> None:
    rules = parse_rules(f"destinations:\n  d: {{slack: {slack}}}\n", Path("routes.yaml"))
    spec = rules.destinations["d"].slack
    assert spec is not None and spec.charts is charts
