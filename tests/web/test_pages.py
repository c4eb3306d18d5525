"""The pages as HTML: escaped labels, the filter narrowing the rows, the timeline with its
rendered messages and links, the status colours, and the route tester answering as
`alert-router route` does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from receiver.events import EventKind
from receiver.history.timeline import describe
from tests.web.conftest import NOW, RULES, Web
from tests.web.seed import T0, XSS, dead_letter, delivered_episode, make_alert, record

GPU = make_alert("fp-gpu", "HighGPUCost", service="training", severity="critical")
EVIL = make_alert("fp-evil", "IdleGPU", service=XSS, team='"><script>alert(2)</script>')


def escaped(text: str) -> str:
    """`text` as Jinja's autoescape writes it."""
    for raw, entity in (
        ("&", "&amp;"),
        ("<", "&lt;"),
        (">", "&gt;"),
        ('"', "&#34;"),
        ("'", "&#39;"),
    ):
        text = text.replace(raw, entity)
    return text


async def seed(web: Web) -> None:
    at = T0.timestamp()
    gpu = delivered_episode(GPU, at, cost=120.0, route="gpu-page", destination="oncall")
    await record(web.store, GPU, gpu)
    await record(web.store, EVIL, delivered_episode(EVIL, at + 10, failures=0))


async def test_labels_and_annotations_are_escaped_everywhere(web: Web) -> None:
    await seed(web)
    for path in ("/ui/alerts", "/ui/alerts/fp-evil"):
        text = (await web.client.get(path)).text
        assert "<img src=x" not in text, path
        assert "<script>alert(2)" not in text, path
        assert escaped(XSS) in text, path
    # The API answers the label as it is, as JSON that no browser renders as a page.
    api = await web.client.get("/api/v1/alerts/fp-evil")
    assert api.headers["content-type"] == "application/json"
    assert api.json()["episodes"][0]["labels"]["service"] == XSS


async def test_the_filter_narrows_the_rows(web: Web) -> None:
    await seed(web)
    every = (await web.client.get("/ui/alerts")).text
    assert "/ui/alerts/fp-gpu" in every and "/ui/alerts/fp-evil" in every
    narrowed = (await web.client.get('/ui/alerts?filter=alertname="HighGPUCost"')).text
    assert "/ui/alerts/fp-gpu" in narrowed
    assert "/ui/alerts/fp-evil" not in narrowed
    by_destination = (await web.client.get("/ui/alerts?destination=oncall")).text
    assert "/ui/alerts/fp-gpu" in by_destination
    assert "/ui/alerts/fp-evil" not in by_destination
    # The form keeps what was asked.
    assert 'value="alertname=&#34;HighGPUCost&#34;"' in narrowed


async def test_a_bad_filter_is_shown_above_an_empty_list(web: Web) -> None:
    response = await web.client.get("/ui/alerts?filter=alertname")
    assert response.status_code == 400
    assert "filter: " in response.text
    assert "No alert episodes match" in response.text


async def test_the_timeline_shows_the_route_the_reason_and_the_attempt(web: Web) -> None:
    await seed(web)
    page = (await web.client.get("/ui/alerts/fp-gpu")).text
    [timeline] = await web.store.alert_timelines("fp-gpu")
    for e in timeline.events:
        assert escaped(describe(e)) in page, e.kind
    kinds = [e.kind for e in timeline.events]
    assert EventKind.ROUTED in kinds and EventKind.DEDUP in kinds and EventKind.ATTEMPT in kinds
    assert "gpu-page" in page
    assert "$120.00/h" in page
    # The message PagerDuty got, its routing key named by its secret's key, never a value.
    assert "&lt;secret pagerduty-key&gt;" in page
    assert "&#34;event_action&#34;: &#34;trigger&#34;" in page
    assert 'href="http://prometheus.example:9090/graph?g0.expr=up"' in page


async def test_the_slack_message_is_shown_as_text(web: Web) -> None:
    await seed(web)
    page = (await web.client.get("/ui/alerts/fp-evil")).text
    assert "FIRING: IdleGPU" in page
    assert "Slack message (finops-slack): channel C0GPUCOSTS1, ts 1700000000.000100" in page


async def test_an_unknown_alert_page_is_a_404(web: Web) -> None:
    response = await web.client.get("/ui/alerts/nope")
    assert response.status_code == 404
    assert "No history of alert nope." in response.text


async def test_the_overview_turns_red_with_a_dead_letter(web: Web) -> None:
    calm = (await web.client.get("/ui/")).text
    assert 'class="banner ok"' in calm
    await dead_letter(web.store, GPU, "oncall", NOW)
    alarmed = (await web.client.get("/ui/")).text
    assert 'class="banner bad"' in alarmed
    assert "1 dead letter waiting" in alarmed
    letters = (await web.client.get("/ui/dead-letters")).text
    assert "HighGPUCost" in letters and "Retry" in letters


async def test_the_rules_page_names_secrets_by_key_only(web: Web) -> None:
    page = (await web.client.get("/ui/rules")).text
    assert "<code>slack-webhook-url</code>" in page
    assert "<code>pagerduty-key</code>" in page
    assert "gpu-page" in page and "cost_per_hour &gt; 100" in page


def cli_route(config: Path, labels: list[str], context: list[str]) -> str:
    args = [sys.executable, "-m", "receiver", "route", "--config", str(config), *labels]
    for item in context:
        args += ["--context", item]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERT_ROUTER_")}
    result = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.rstrip("\n")


TESTER = [
    (["alertname=HighGPUCost", "service=training"], ["cost_per_hour=120"]),
    (["alertname=HighGPUCost"], ["cost_per_hour=80"]),
    (["alertname=Other"], []),
]


@pytest.mark.parametrize(("labels", "context"), TESTER)
async def test_the_route_tester_answers_as_the_cli(
    web: Web, tmp_path: Path, labels: list[str], context: list[str]
) -> None:
    config = tmp_path / "cli-routes.yaml"
    config.write_text(RULES)
    response = await web.client.get(
        "/ui/rules", params={"labels": "\n".join(labels), "context": "\n".join(context)}
    )
    expected = cli_route(config, labels, context)
    assert f'<pre class="answer">{escaped(expected)}</pre>' in response.text


async def test_the_route_tester_names_a_bad_line(web: Web) -> None:
    response = await web.client.get(
        "/ui/rules", params={"labels": "alertname HighGPUCost", "context": "nonsense=1"}
    )
    assert "label &#39;alertname HighGPUCost&#39; must be name=value" in response.text
    assert "unknown context value &#39;nonsense&#39;" in response.text
