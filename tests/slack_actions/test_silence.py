"""The Silence button against a real Alertmanager."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from receiver.notify.slack.buttons import (
    ActionValue,
)
from receiver.samples import webhook
from receiver.slack_actions.endpoint import ACTIONS_PATH
from tests.fakes.alertmanager import (
    AlertmanagerFactory,
    AlertmanagerServer,
    am_alert,
)
from tests.service import TOKEN
from tests.slack_actions.support import (
    ALICE,
    BOB,
    HOUR,
    WARNING,
    Router,
    at,
    buttons,
    equality,
    matchers_of,
    press_body,
    signed,
    silences_from,
)
from tests.support import free_port, wait_until


def test_signed_press_creates_one_silence_and_edits_the_message(
    make_router: Callable[..., Router], alertmanager: AlertmanagerServer
) -> None:
    router = make_router(alertmanager.url)
    router.post(webhook([WARNING], external_url=alertmanager.url))
    message = router.message("HighGPUCost")

    before = time.time()
    answer = router.press(message, "silence_14400")
    assert answer.status_code == 200
    assert answer.elapsed.total_seconds() < 3

    wait_until(lambda: router.current(message).edits == 1)
    [silence] = silences_from(alertmanager)
    assert matchers_of(silence) == equality(WARNING[0])
    assert silence["createdBy"] == "alice"
    assert f"slack:{message.channel}/{message.ts}" in silence["comment"]
    assert silence["status"]["state"] == "active"
    ends = at(silence["endsAt"]).timestamp()
    assert before + 4 * HOUR - 5 <= ends <= time.time() + 4 * HOUR + 5

    edited = router.current(message).all_text()
    assert "Silenced" in edited
    assert "<@U0ALICE01>" in edited
    assert f"<{alertmanager.url}/#/silences/{silence['id']}|{silence['id']}>" in edited
    assert f"<!date^{int(at(silence['endsAt']).timestamp())}^" in edited
    assert router.slack.responses() == []
    assert router.actions("silence", "success") == 1


def test_pressing_twice_and_slack_retries_make_one_silence(
    make_router: Callable[..., Router], alertmanager: AlertmanagerServer
) -> None:
    router = make_router(alertmanager.url)
    router.post(webhook([WARNING], external_url=alertmanager.url))
    message = router.message("HighGPUCost")

    assert router.press(message, "silence_3600").status_code == 200
    assert router.press(message, "silence_3600", user=BOB).status_code == 200
    # Slack's retry of a delivery: signed anew, with X-Slack-Retry-Num.
    retry = router.press(message, "silence_3600", headers={"X-Slack-Retry-Num": "1"})
    assert retry.status_code == 200
    # A double click that reaches the router twice at once.
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: router.press(message, "silence_3600"), range(4)))
    assert [a.status_code for a in answers] == [200] * 4

    [silence] = silences_from(alertmanager)
    assert len(alertmanager.silences()) == 1
    assert router.actions("silence", "success") == 1
    assert router.actions("silence", "already_done") == 6
    # Bob learns it was silenced already; the retry says nothing more to anyone.
    told = [r["text"] for r in router.slack.responses()]
    assert len(told) == 5 and all("Already silenced" in t for t in told)
    assert all(r["response_type"] == "ephemeral" for r in router.slack.responses())

    # A longer silence from the same message extends that silence: still one, same ID.
    assert router.press(message, "silence_86400").status_code == 200
    [extended] = silences_from(alertmanager)
    assert extended["id"] == silence["id"]
    assert at(extended["endsAt"]).timestamp() >= time.time() + 24 * HOUR - 10
    wait_until(lambda: router.actions("silence", "success") == 2)


def test_a_silenced_alert_stops_reaching_the_router(
    make_router: Callable[..., Router], alertmanager_factory: AlertmanagerFactory
) -> None:
    am_port = free_port()
    router = make_router(f"http://127.0.0.1:{am_port}")
    am = alertmanager_factory(
        f"{router.url}/alerts",
        TOKEN,
        port=am_port,
        group_wait="1s",
        group_interval="1s",
        repeat_interval="2s",
    )
    labels, annotations = WARNING
    am.post_alerts([am_alert(labels, annotations)])
    message = router.message("HighGPUCost", timeout=20)
    # Before the silence Alertmanager repeats the alert to the router: the check can fail.
    wait_until(lambda: am.notifications()["sent"] >= 3, timeout=20)

    assert router.press(message, "silence_3600").status_code == 200
    [silence] = silences_from(am)
    assert matchers_of(silence) == equality(labels)
    wait_until(lambda: am.alerts()[0]["status"]["state"] == "suppressed", timeout=10)
    assert am.alerts()[0]["status"]["silencedBy"] == [silence["id"]]

    time.sleep(1.5)  # a flush already under way when the silence came
    sent = am.notifications()["sent"]
    webhooks = router.server.service.metrics.registry.get_sample_value(
        "alert_router_webhooks_total", {"code": "200", "source": "alertmanager"}
    )
    time.sleep(6)  # three repeat intervals
    assert am.notifications()["sent"] == sent
    after = router.server.service.metrics.registry.get_sample_value(
        "alert_router_webhooks_total", {"code": "200", "source": "alertmanager"}
    )
    assert after == webhooks
    # The router itself saw the alert while Alertmanager still sent it (its own labels).
    assert ActionValue.decode(buttons(message)[0]["value"]).labels == labels


def test_labels_too_long_for_the_button_are_found_in_alertmanager(
    make_router: Callable[..., Router], alertmanager_factory: AlertmanagerFactory
) -> None:
    am_port = free_port()
    router = make_router(f"http://127.0.0.1:{am_port}")
    am = alertmanager_factory(f"{router.url}/alerts", TOKEN, port=am_port)
    labels = {**WARNING[0], "pods": ",".join(f"trainer-{i:04d}" for i in range(300))}
    am.post_alerts([am_alert(labels, WARNING[1])])
    message = router.message("HighGPUCost", timeout=20)
    assert ActionValue.decode(buttons(message)[0]["value"]).labels is None

    assert router.press(message, "silence_3600").status_code == 200
    wait_until(lambda: router.current(message).edits == 1)
    [silence] = silences_from(am)
    assert matchers_of(silence) == equality(labels)


def test_alertmanager_down_tells_the_user_and_changes_nothing(
    make_router: Callable[..., Router], alertmanager: AlertmanagerServer
) -> None:
    router = make_router(alertmanager.url)
    router.post(webhook([WARNING], external_url=alertmanager.url))
    message = router.message("HighGPUCost")
    alertmanager.stop()

    assert router.press(message, "silence_3600").status_code == 200

    wait_until(lambda: len(router.slack.responses("1")) == 1)
    [told] = router.slack.responses("1")
    assert told == {
        "response_type": "ephemeral",
        "replace_original": False,
        "text": told["text"],
    }
    assert "No silence" in told["text"]
    assert "cannot be reached" in told["text"]
    assert router.current(message).edits == 0
    assert router.actions("silence", "failure") == 1
    alertmanager.start()
    assert silences_from(alertmanager) == []


def test_the_message_is_not_brought_back_after_a_resolve(
    make_router: Callable[..., Router], alertmanager: AlertmanagerServer
) -> None:
    router = make_router(alertmanager.url)
    body = webhook([WARNING], external_url=alertmanager.url)
    router.post(body)
    message = router.message("HighGPUCost")
    stale = copy.deepcopy(router.current(message))  # the fake edits its messages in place
    # The resolve edits the message, then posts in its thread: that post takes 2 s to
    # arrive, so the press below lands while the resolve is still being sent (the ledger
    # has it only afterwards).
    router.slack.slow_network(0.0, 2.0)
    router.post(
        {
            **body,
            "status": "resolved",
            "alerts": [
                {**a, "status": "resolved", "endsAt": "2030-01-01T00:00:00.000Z"}
                for a in body["alerts"]
            ],
        }
    )
    wait_until(lambda: router.current(message).edits == 1)

    # A press on the message as it was before the resolve (a client not yet refreshed).
    form = press_body(router.slack, stale, "silence_3600", ALICE, "1")
    answer = httpx.post(f"{router.url}{ACTIONS_PATH}", content=form, headers=signed(form))
    assert answer.status_code == 200

    wait_until(lambda: len(router.slack.responses()) == 1)
    assert "the alert has resolved" in router.slack.responses()[0]["text"]
    assert len(silences_from(alertmanager)) == 1
    assert router.current(message).edits == 1
    assert "RESOLVED" in router.current(message).text
