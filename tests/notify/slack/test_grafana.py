"""Slack messages of a Grafana alert beside an Alertmanager one: the source, the query
values, the Grafana links and image, the Silence link and buttons; escaping of all of it."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from receiver.config.secrets import SecretStore
from receiver.models import Alert, CostContext, GrafanaFields, Notification
from receiver.notify.slack.bot import SlackBotNotifier
from receiver.notify.slack.buttons import (
    GRAFANA_SILENCE_ACTION,
    ActionValue,
    Buttons,
    actions_block,
)
from receiver.notify.slack.render import render_batch
from receiver.notify.slack.webhook import SlackWebhookNotifier
from tests.fakes.slack import BOT_TOKEN, DEFAULT_CHANNEL, SlackApiServer, SlackWebhookServer
from tests.notify.slack.support import (
    HOSTILE,
    INJECTIONS,
    all_text,
    assert_within_limits,
    deliver,
    links,
    make_alert,
    mrkdwn_tokens,
    notification,
    offline,
    write_secret,
)

GRAFANA = "https://grafana.example"
RULE = f"{GRAFANA}/alerting/grafana/ddk3f/view?orgId=1"
DASHBOARD = f"{GRAFANA}/d/gpu-costs?orgId=1"
PANEL = f"{GRAFANA}/d/gpu-costs?orgId=1&viewPanel=4"
SILENCE = f"{GRAFANA}/alerting/silence/new?alertmanager=grafana&matcher=alertname%3DHighGPUCost"
IMAGE = "https://images.example/render/d-solo/gpu-costs.png"


def grafana_alert(
    name: str = "HighGPUCost", *, labels: dict[str, str] | None = None, **fields: Any
) -> Alert:
    defaults: dict[str, Any] = {
        "values": {"A": 61.5, "B": 0.1 + 0.2},
        "value_string": "[ var='A' labels={service=trainer} value=61.5 ]",
        "dashboard_url": DASHBOARD,
        "panel_url": PANEL,
        "silence_url": SILENCE,
        "image_url": IMAGE,
        "org_id": 1,
    }
    return replace(
        make_alert(name, labels=labels, external_url=GRAFANA),
        generator_url=RULE,
        grafana=GrafanaFields(**{**defaults, **fields}),
    )


def blocks_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [*body["blocks"], *body["attachments"][0]["blocks"]]


def trailer(body: dict[str, Any]) -> list[str]:
    contexts = [b for b in blocks_of(body) if b["type"] == "context"]
    return [e["text"] for e in contexts[-1]["elements"]]


def fields(body: dict[str, Any]) -> list[str]:
    return [f["text"] for b in blocks_of(body) for f in b.get("fields", [])]


def images(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in blocks_of(body) if b["type"] == "image"]


def test_grafana_and_alertmanager_messages_side_by_side(
    webhook: SlackWebhookNotifier, slack_webhook: SlackWebhookServer
) -> None:
    deliver(webhook, [notification(make_alert())])
    deliver(webhook, [notification(grafana_alert())])

    am, gf = slack_webhook.messages
    assert_within_limits(am)
    assert_within_limits(gf)

    # Alertmanager's message: nothing new.
    assert "Grafana" not in all_text(am)
    assert not images(am)
    assert fields(am) == []
    assert set(links(am)) == {"Graph", "Runbook", "Silence"}
    assert links(am)["Silence"].startswith("http://alertmanager.example:9093/#/silences/new?")
    assert [t for t in trailer(am) if not t.startswith("Started")] == ["route: expensive"]

    # Grafana's: the source, the values, its links and its image.
    assert trailer(gf)[-1] == "from Grafana (org 1)"
    assert fields(gf) == ["*Query values*\nA = 61.5\nB = 0.3"]
    assert links(gf) == {
        "Alert rule": RULE,
        "Runbook": "https://runbooks.example/gpu",
        "Dashboard": DASHBOARD,
        "Panel": PANEL,
        "Silence": SILENCE,  # Grafana's own silence page, never Alertmanager's form
    }
    [image] = images(gf)
    assert image["image_url"] == IMAGE
    assert image["alt_text"]


def test_value_string_is_shown_when_grafana_sent_no_values() -> None:
    alert = grafana_alert(values={}, value_string="[ var='A' value=3 ]")

    (body,) = offline().render([notification(alert)])

    assert fields(body) == ["*Query values*\n[ var='A' value=3 ]"]
    (nothing,) = offline().render([notification(grafana_alert(values={}, value_string=""))])
    assert fields(nothing) == []


@pytest.mark.parametrize(
    "url",
    [
        "http://images.example/panel.png",  # Slack must fetch it publicly: https only
        "javascript:alert(1)",
        "https://",  # no host
        "https://images.example/" + "p" * 3000,  # Slack: image_url max 3000 characters
        "",
    ],
)
def test_an_image_that_is_not_https_is_not_shown(url: str) -> None:
    (body,) = offline().render([notification(grafana_alert(image_url=url))])

    assert images(body) == []
    assert_within_limits(body)


def test_an_image_url_is_encoded_for_slack() -> None:
    alert = grafana_alert(image_url="https://images.example/a b/<panel>.png")

    (body,) = offline().render([notification(alert)])

    assert images(body)[0]["image_url"] == "https://images.example/a%20b/%3Cpanel%3E.png"


@pytest.mark.parametrize("kind", ["webhook", "bot"])
def test_injection_through_values_keys_and_value_string_is_escaped(
    kind: str,
    webhook: SlackWebhookNotifier,
    bot: SlackBotNotifier,
    slack_webhook: SlackWebhookServer,
    slack_api: SlackApiServer,
) -> None:
    with_values = grafana_alert(
        labels=HOSTILE,
        values={
            "<!channel>": 1.0,
            "<@U123>": 2.0,
            "<https://evil.example|click>": 3.0,
            "@here": 4.0,
            "R&D <b>": 5.0,
        },
    )
    with_string = grafana_alert(
        "ValueStringOnly",
        values={},
        value_string="<!channel> <!here> <@U123> <https://evil.example|click> <b> @here",
    )
    for alert in (with_values, with_string):
        n = notification(alert)
        if kind == "webhook":
            deliver(webhook, [n])
        else:
            deliver(bot, [n])
    if kind == "webhook":
        bodies = slack_webhook.messages
    else:
        bodies = [
            {"text": m.text, "blocks": m.blocks, "attachments": m.attachments}
            for m in slack_api.messages(DEFAULT_CHANNEL)
        ]

    assert len(bodies) == 2
    for body in bodies:
        assert_within_limits(body)
        text = all_text(body)
        for injection in INJECTIONS:
            assert injection not in text
        assert "&lt;!channel&gt;" in text
        assert "&lt;@U123&gt;" in text
        assert "&lt;https://evil.example|click&gt;" in text
        assert "@here" not in text  # defused with a word joiner
        for token in mrkdwn_tokens(body):
            assert token.startswith("!date^") or re.fullmatch(
                r"https?://[^|<>\s]+\|(Alert rule|Runbook|Dashboard|Panel|Silence)", token
            ), token
    assert "R&amp;D &lt;b&gt; = 5" in all_text(bodies[0])


def test_thousands_of_query_values_stay_within_the_field_limit() -> None:
    values = {f"{'r' * 100}{i:05d}": i * 1.5 for i in range(5000)}

    (body,) = offline().render([notification(grafana_alert(values=values))])

    assert_within_limits(body)
    [text] = fields(body)
    assert len(text) <= 2000  # Slack: 2000 characters per field text
    assert re.search(r"… and \d+ more$", text)


def test_digest_names_each_alert_s_source() -> None:
    batch = [notification(grafana_alert("FromGrafana")), notification(make_alert("FromAM"))]

    body = render_batch(batch).body()

    assert_within_limits(body)
    lines = [
        line
        for b in body["attachments"][0]["blocks"]
        if b["type"] == "section"
        for line in b["text"]["text"].split("\n")
    ]
    grafana_line = next(line for line in lines if "FromGrafana" in line)
    am_line = next(line for line in lines if "FromAM" in line)
    assert "_(Grafana)_" in grafana_line
    assert "A = 61.5" in grafana_line  # no cost context: the first query value instead
    assert "Grafana" not in am_line
    context = body["attachments"][0]["blocks"][-1]
    assert [e["text"] for e in context["elements"]][1:] == [
        "<http://alertmanager.example:9093|Alertmanager>",
        f"<{GRAFANA}|Grafana>",
    ]


def test_an_alertmanager_digest_is_unchanged() -> None:
    batch = [notification(make_alert("A1")), notification(make_alert("A2"))]

    body = render_batch(batch).body()

    context = body["attachments"][0]["blocks"][-1]
    assert [e["text"] for e in context["elements"]][1:] == [
        "<http://alertmanager.example:9093|Alertmanager>"
    ]
    assert "Grafana" not in all_text(body)


def test_no_silence_link_without_a_grafana_silence_url() -> None:
    # Grafana's externalURL is Grafana's: Alertmanager's silence form must not be built on it.
    (body,) = offline().render([notification(grafana_alert(silence_url=""))])
    assert "Silence" not in links(body)
    (unsafe,) = offline().render([notification(grafana_alert(silence_url="javascript:x"))])
    assert "Silence" not in links(unsafe)


# -- the buttons of bot messages


def _acknowledge_to(destination: str) -> Any:
    def routed(n: Notification) -> list[str]:
        return [destination]

    return routed


BUTTONS = Buttons(silences=(3600.0, 86400.0), pagerduty=_acknowledge_to("pd"), silence_links=True)


def _elements(alert: Alert, buttons: Buttons = BUTTONS) -> list[dict[str, Any]]:
    block = actions_block(notification(alert), buttons)
    return [] if block is None else block.to_dict()["elements"]


def test_silence_buttons_for_each_source() -> None:
    am = _elements(make_alert())
    gf = _elements(grafana_alert())

    # Alertmanager's alert: the Alertmanager silence flow, as before.
    assert [e["action_id"] for e in am] == ["silence_3600", "silence_86400", "acknowledge"]
    assert all("url" not in e for e in am)
    # Grafana's: a link to Grafana's silence page, never the Alertmanager silence buttons.
    assert [e["action_id"] for e in gf] == [GRAFANA_SILENCE_ACTION, "acknowledge"]
    link = gf[0]
    assert link["url"] == SILENCE
    assert link["text"]["text"] == "Silence in Grafana"
    assert "value" not in link
    # Acknowledge stays; its value says where the alert came from.
    assert ActionValue.decode(gf[1]["value"]).source == "grafana"
    assert ActionValue.decode(am[-1]["value"]).source == "alertmanager"


def test_no_grafana_silence_button_without_a_usable_url() -> None:
    for url in ("", "javascript:alert(1)", f"{GRAFANA}/" + "s" * 3000):
        ids = [e["action_id"] for e in _elements(grafana_alert(silence_url=url))]
        assert ids == ["acknowledge"], url


def test_no_grafana_silence_button_where_silence_buttons_are_off() -> None:
    off = Buttons(silences=(3600.0,), pagerduty=_acknowledge_to("pd"), silence_links=False)

    assert [e["action_id"] for e in _elements(grafana_alert(), off)] == ["acknowledge"]
    assert actions_block(notification(grafana_alert()), Buttons(silences=(3600.0,))) is None


def test_bot_message_of_a_grafana_alert_is_accepted_with_its_buttons(
    store: SecretStore, slack_api: SlackApiServer
) -> None:
    write_secret(store, "slack-bot-token", BOT_TOKEN)
    notifier = SlackBotNotifier(
        "finops-bot",
        store.source("slack-bot-token"),
        DEFAULT_CHANNEL,
        api_url=slack_api.api_url,
        timeout=2,
        buttons=BUTTONS,
    )

    deliver(notifier, [notification(grafana_alert(), context=CostContext())])

    (message,) = slack_api.messages(DEFAULT_CHANNEL)
    body = {"text": message.text, "blocks": message.blocks, "attachments": message.attachments}
    assert_within_limits(body)
    ids = [e["action_id"] for b in blocks_of(body) if b["type"] == "actions" for e in b["elements"]]
    assert ids == [GRAFANA_SILENCE_ACTION, "acknowledge"]


def test_button_value_round_trips_its_source() -> None:
    value = ActionValue(
        destination="bot",
        fingerprint="fp",
        starts_at=make_alert().starts_at,
        source="grafana",
    )

    assert ActionValue.decode(value.encode()) == value
    assert '"o"' not in replace(value, source="alertmanager").encode()  # as before
    with pytest.raises(ValueError, match="source"):
        ActionValue.decode(value.encode().replace('"grafana"', '"zabbix"'))


# -- an image Slack cannot download


@pytest.mark.parametrize("kind", ["webhook", "bot"])
def test_an_image_slack_cannot_download_costs_the_image_not_the_message(
    kind: str,
    webhook: SlackWebhookNotifier,
    bot: SlackBotNotifier,
    slack_webhook: SlackWebhookServer,
    slack_api: SlackApiServer,
) -> None:
    fake = slack_webhook if kind == "webhook" else slack_api
    fake.unreachable_images.add("https://images.example/")
    n = notification(grafana_alert())

    deliver(webhook if kind == "webhook" else bot, [n])

    if kind == "webhook":
        (body,) = slack_webhook.messages
    else:
        (message,) = slack_api.messages(DEFAULT_CHANNEL)
        body = {"text": message.text, "blocks": message.blocks, "attachments": message.attachments}
    assert images(body) == []
    assert fields(body) == ["*Query values*\nA = 61.5\nB = 0.3"]
    assert len(fake.requests) == 2  # refused with the image, accepted without
