"""A retry changes something only with the CSRF token and from our own origin; otherwise it
answers 403 with the reason and the dead letter stays. Every write is logged with who."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from receiver.events import EventKind
from tests.web.conftest import BASE, NOW, PASSWORD, Web, basic
from tests.web.seed import dead_letter, make_alert

ORIGIN = {"Origin": BASE}


async def token_of(web: Web) -> str:
    body = (await web.client.get("/api/v1/dead-letters")).json()
    token: str = body["csrf_token"]
    return token


async def letter_ids(web: Web) -> list[str]:
    return [d.id for d in await web.store.dead_letters()]


@pytest.fixture
async def letter(web: Web) -> str:
    return await dead_letter(web.store, make_alert("fp1", "HighGPUCost"), "finops-slack", NOW)


REFUSED = [
    # No token at all.
    ({**ORIGIN}, "the CSRF token is missing"),
    # A token that is not ours.
    ({**ORIGIN, "X-CSRF-Token": "0" * 64}, "the CSRF token is wrong"),
]


@pytest.mark.parametrize(("headers", "reason"), REFUSED)
async def test_an_api_retry_without_the_right_token_changes_nothing(
    web: Web, letter: str, headers: dict[str, str], reason: str
) -> None:
    response = await web.client.post(f"/api/v1/dead-letters/{letter}/retry", headers=headers)
    assert response.status_code == 403
    assert reason in response.json()["error"]
    assert await letter_ids(web) == [letter]
    assert web.recorded == []


async def test_an_api_retry_from_another_origin_changes_nothing(web: Web, letter: str) -> None:
    token = await token_of(web)
    for headers in (
        {"Origin": "http://evil.test"},
        {"Origin": "null"},
        {"Referer": "http://evil.test/ui/dead-letters"},
        {},  # neither Origin nor Referer
    ):
        response = await web.client.post(
            f"/api/v1/dead-letters/{letter}/retry", headers={**headers, "X-CSRF-Token": token}
        )
        assert response.status_code == 403, headers
        assert "origin" in response.json()["error"].lower() or "site" in response.json()["error"]
    assert await letter_ids(web) == [letter]


async def test_another_users_token_is_refused(web: Web, letter: str) -> None:
    token = await token_of(web)
    response = await web.anonymous.post(
        f"/api/v1/dead-letters/{letter}/retry",
        headers={**ORIGIN, "X-CSRF-Token": token, "Authorization": basic("mallory", PASSWORD)},
    )
    assert response.status_code == 403
    assert await letter_ids(web) == [letter]


async def test_an_api_retry_queues_the_letter_and_records_who(
    web: Web, letter: str, caplog: pytest.LogCaptureFixture
) -> None:
    token = await token_of(web)
    with caplog.at_level(logging.INFO, logger="alert_router.web"):
        response = await web.client.post(
            f"/api/v1/dead-letters/{letter}/retry", headers={**ORIGIN, "X-CSRF-Token": token}
        )
    assert response.status_code == 200
    assert response.json() == {"id": letter, "outcome": "queued"}
    assert await letter_ids(web) == []
    assert await web.store.ready_count("finops-slack", NOW) == 1
    [(event, meta)] = web.recorded
    assert meta is None
    assert (event.kind, event.fingerprint, event.destination) == (
        EventKind.REPLAYED,
        "fp1",
        "finops-slack",
    )
    assert event.episode == make_alert("fp1", "HighGPUCost").episode
    assert event.data == {"by": "ui:oncall-amy", "dead_letter": letter}
    [line] = [r for r in caplog.records if r.getMessage() == "dead letter retried"]
    assert (line.who, line.what, line.dead_letter, line.outcome) == (  # type: ignore[attr-defined]
        "oncall-amy",
        "retry",
        letter,
        "queued",
    )
    # Again: it is gone, and the answer says so.
    again = await web.client.post(
        f"/api/v1/dead-letters/{letter}/retry", headers={**ORIGIN, "X-CSRF-Token": token}
    )
    assert again.status_code == 404
    assert again.json()["outcome"] == "not_found"


async def test_a_refused_write_is_logged(
    web: Web, letter: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="alert_router.web"):
        await web.client.post(f"/api/v1/dead-letters/{letter}/retry", headers=ORIGIN)
    [line] = [r for r in caplog.records if r.getMessage() == "dead letter retry refused"]
    assert line.who == "oncall-amy"  # type: ignore[attr-defined]
    assert "CSRF token is missing" in line.outcome  # type: ignore[attr-defined]
    assert PASSWORD not in caplog.text


async def test_the_form_needs_its_token(web: Web, letter: str) -> None:
    page = await web.client.get("/ui/dead-letters")
    token = await token_of(web)
    assert f'value="{token}"' in page.text
    url = f"/ui/dead-letters/{letter}/retry"
    no_token = await web.client.post(url, data={}, headers=ORIGIN)
    assert no_token.status_code == 403
    assert "Nothing was changed: the CSRF token is missing" in no_token.text
    cross = await web.client.post(
        url, data={"csrf_token": token}, headers={"Origin": "http://evil.test"}
    )
    assert cross.status_code == 403
    assert await letter_ids(web) == [letter]

    # The Referer stands in for a missing Origin.
    done = await web.client.post(
        url, data={"csrf_token": token}, headers={"Referer": f"{BASE}/ui/dead-letters"}
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"/ui/dead-letters?outcome=queued&id={letter}"
    assert await letter_ids(web) == []
    flash = await web.client.get(done.headers["location"])
    assert f"Dead letter {letter} is queued again" in flash.text


async def test_a_report_dead_letter_is_retried_without_an_alert_event(web: Web) -> None:
    slot = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert await web.store.claim_report_slot("weekly", slot, "me", ["finops-slack"])
    [send] = await web.store.claim_report_sends(10, NOW, 60, "me")
    await web.store.dead_letter_report_send("me", send, "HTTP 500", NOW)
    [letter] = await letter_ids(web)
    assert letter.startswith("report-")
    token = await token_of(web)
    response = await web.client.post(
        f"/api/v1/dead-letters/{letter}/retry", headers={**ORIGIN, "X-CSRF-Token": token}
    )
    assert response.status_code == 200
    assert await letter_ids(web) == []
    assert web.recorded == []
