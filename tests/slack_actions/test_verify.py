"""Requests that are not fresh, signed presses from Slack are refused and change nothing."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import httpx
import pytest

from receiver.samples import webhook
from receiver.slack_actions.endpoint import ACTIONS_PATH
from tests.fakes.alertmanager import (
    AlertmanagerServer,
)
from tests.slack_actions.support import (
    ALICE,
    AUTH,
    SIGNING,
    WARNING,
    Router,
    press_body,
    signed,
    silences_from,
    tamper,
)
from tests.support import wait_until


@pytest.mark.parametrize(
    "case",
    [
        "wrong-secret",
        "no-timestamp",
        "no-signature",
        "old-timestamp",
        "future-timestamp",
        "tampered-body",
        "replayed",
        "bearer-token-only",
        "not-a-number",
        "unicode-signature",
    ],
)
def test_unverified_requests_get_401_and_change_nothing(
    case: str,
    make_router: Callable[..., Router],
    alertmanager: AlertmanagerServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    router = make_router(alertmanager.url)
    router.post(webhook([WARNING], external_url=alertmanager.url))
    message = router.message("HighGPUCost")
    body = press_body(router.slack, message, "silence_3600", ALICE, "1")
    headers = signed(body)
    url = f"{router.url}{ACTIONS_PATH}"
    if case == "wrong-secret":
        headers = signed(body, secret="another-apps-signing-secret")
    elif case == "no-timestamp":
        del headers["X-Slack-Request-Timestamp"]
    elif case == "no-signature":
        del headers["X-Slack-Signature"]
    elif case == "old-timestamp":
        headers = signed(body, at=time.time() - 6 * 60)  # Slack: 5 minutes at most
    elif case == "future-timestamp":
        headers = signed(body, at=time.time() + 6 * 60)
    elif case == "tampered-body":
        body = tamper(body)
    elif case == "replayed":
        first = httpx.post(url, content=body, headers=headers, timeout=10)
        assert first.status_code == 200
        wait_until(lambda: len(silences_from(alertmanager)) == 1)
    elif case == "bearer-token-only":
        headers = {"Content-Type": "application/x-www-form-urlencoded", **AUTH}
    elif case == "not-a-number":
        headers["X-Slack-Request-Timestamp"] = "yesterday"
    else:
        headers["X-Slack-Signature"] = "v0=é" + headers["X-Slack-Signature"][4:]
    before = len(silences_from(alertmanager))
    edits = router.current(message).edits

    # Headers as bytes: a client can send any byte, not only ASCII.
    raw = [(k.encode(), v.encode("latin-1")) for k, v in headers.items()]
    answer = httpx.post(url, content=body.encode(), headers=raw, timeout=10)

    assert answer.status_code == 401, answer.text
    time.sleep(0.3)
    assert len(silences_from(alertmanager)) == before
    assert router.current(message).edits == edits
    assert router.slack.responses() == [] or case == "replayed"
    assert router.actions("unknown", "unauthorized") == 1
    assert SIGNING not in caplog.text
    assert SIGNING not in answer.text


def test_without_a_signing_secret_every_press_is_refused(
    make_router: Callable[..., Router],
    alertmanager: AlertmanagerServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    router = make_router(alertmanager.url, signing=None)
    router.post(webhook([WARNING], external_url=alertmanager.url))
    message = router.message("HighGPUCost")
    answer = router.press(message, "silence_3600")
    assert answer.status_code == 401
    assert "slack-signing-secret" in caplog.text
    assert silences_from(alertmanager) == []
