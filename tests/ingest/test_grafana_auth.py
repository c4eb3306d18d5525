"""Grafana's ways in, through the webhook endpoint on a real SQLite store: POST and PUT,
the bearer token, HTTP Basic, and the HMAC signature (good, bad, stale, missing)."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from receiver.config.schema import GrafanaHmacSpec
from receiver.ingest.auth import GRAFANA_HMAC_SECRET, WEBHOOK_PASSWORD
from tests.ingest.grafana import (
    HMAC_SECRET,
    NOW,
    PASSWORD,
    Ingest,
    body_of,
    grafana_fixture,
    make_ingest,
    sign,
)
from tests.ingest.support import fixture
from tests.service import TOKEN

BEARER = {"Authorization": f"Bearer {TOKEN}"}
FIRING = body_of(grafana_fixture("webhook-firing.json"))
STAMP_HEADER = "X-Grafana-Alerting-Signature-Timestamp"


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
async def ingest(tmp_path: Path) -> AsyncIterator[Ingest]:
    made = make_ingest(tmp_path)
    await made.store.open()
    yield made
    await made.store.close()


@pytest.fixture
async def stamped(tmp_path: Path) -> AsyncIterator[Ingest]:
    """Signatures over `timestamp:body`, the timestamp in the docs' example header."""
    made = make_ingest(tmp_path, GrafanaHmacSpec(timestamp_header=STAMP_HEADER))
    made.secret(GRAFANA_HMAC_SECRET, HMAC_SECRET)
    await made.store.open()
    yield made
    await made.store.close()


# -- methods ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_grafana_webhook_is_accepted_by_post_and_put(ingest: Ingest, method: str) -> None:
    r = await ingest.send(FIRING, BEARER, method=method)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    [stored] = await ingest.stored()
    assert stored.source == "grafana"
    assert stored.grafana is not None and stored.grafana.values == {"A": 61.5, "B": 61.5, "C": 1}
    assert (
        ingest.sample("alert_router_alerts_received_total", outcome="accepted", source="grafana")
        == 1
    )
    assert ingest.sample("alert_router_webhooks_total", code="200", source="grafana") == 1


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_alertmanager_webhook_by_post_and_put(ingest: Ingest, method: str) -> None:
    r = await ingest.send(body_of(fixture("alertmanager-webhook-v4.json")), BEARER, method=method)
    assert r.status_code == 200
    [stored] = await ingest.stored()
    assert stored.source == "alertmanager" and stored.grafana is None


# -- dedup -----------------------------------------------------------------------------


async def test_grafanas_ha_copies_are_absorbed_at_ingest(ingest: Ingest) -> None:
    # Grafana in HA mode: each instance sends the same alert, its fingerprint its own.
    assert (await ingest.send(FIRING, BEARER)).json()["accepted"] == 1
    again = await ingest.send(FIRING, BEARER, method="PUT")
    assert again.json() == {"accepted": 0, "duplicates": 1, "rejected": []}
    resolved = await ingest.send(body_of(grafana_fixture("webhook-resolved.json")), BEARER)
    assert resolved.json()["accepted"] == 1
    assert await ingest.inbox() == 2
    assert (
        ingest.sample("alert_router_alerts_received_total", outcome="duplicate", source="grafana")
        == 1
    )
    assert (
        ingest.sample(
            "alert_router_alerts_received_total", outcome="duplicate", source="alertmanager"
        )
        == 0
    )


async def test_one_grafana_and_one_alertmanager_alert_for_one_service(ingest: Ingest) -> None:
    grafana = grafana_fixture("webhook-firing.json")
    alertmanager = fixture("alertmanager-webhook-v4.json")
    service = alertmanager["alerts"][0]["labels"]["service"]
    grafana["alerts"][0]["labels"]["service"] = service
    assert (await ingest.send(body_of(grafana), BEARER)).json()["accepted"] == 1
    assert (await ingest.send(body_of(alertmanager), BEARER)).json()["accepted"] == 1
    stored = await ingest.stored()
    assert sorted((a.source, a.labels["service"]) for a in stored) == [
        ("alertmanager", service),
        ("grafana", service),
    ]
    assert len({a.episode for a in stored}) == 2
    for source in ("alertmanager", "grafana"):
        assert (
            ingest.sample("alert_router_alerts_received_total", outcome="accepted", source=source)
            == 1
        )


# -- the Authorization header ----------------------------------------------------------


@pytest.mark.parametrize("user", ["grafana", "", "any:name"])
async def test_basic_with_the_password_is_accepted_whatever_the_user(
    ingest: Ingest, user: str
) -> None:
    ingest.secret(WEBHOOK_PASSWORD, PASSWORD)
    r = await ingest.send(
        FIRING, basic(user, PASSWORD) if ":" not in user else basic("any", PASSWORD)
    )
    assert r.status_code == 200, r.text
    assert await ingest.inbox() == 1


@pytest.mark.parametrize(
    "header",
    [
        basic("grafana", "wrong-password"),
        basic("grafana", PASSWORD + "x"),
        basic("grafana", ""),
        basic(PASSWORD, ""),  # the password as the user name
        {"Authorization": f"Basic {PASSWORD}"},  # not base64 of user:password
        {"Authorization": "Basic !!!not-base64"},
        basic("grafana", TOKEN),  # the bearer token is not the password
        {"Authorization": f"Bearer {PASSWORD}"},  # nor the other way round
    ],
)
async def test_basic_with_a_wrong_password_is_401(ingest: Ingest, header: dict[str, str]) -> None:
    ingest.secret(WEBHOOK_PASSWORD, PASSWORD)
    r = await ingest.send(FIRING, header)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert PASSWORD not in r.text
    assert await ingest.inbox() == 0
    assert (
        ingest.sample(
            "alert_router_webhooks_refused_total", reason="unauthorized", source="unknown"
        )
        == 1
    )


async def test_basic_without_a_password_secret_is_401(ingest: Ingest) -> None:
    r = await ingest.send(FIRING, basic("grafana", PASSWORD))
    assert r.status_code == 401


# -- the HMAC signature ----------------------------------------------------------------


async def test_a_good_signature_over_the_body_is_accepted(ingest: Ingest) -> None:
    ingest.secret(GRAFANA_HMAC_SECRET, HMAC_SECRET)
    signed = {"X-Grafana-Alerting-Signature": sign(FIRING)}
    # With the bearer token, and alone: a valid signature authenticates.
    assert (await ingest.send(FIRING, {**BEARER, **signed})).status_code == 200
    r = await ingest.send(FIRING, signed, method="PUT")
    assert r.status_code == 200 and r.json()["duplicates"] == 1


async def test_grafanas_code_default_header_is_read_too(ingest: Ingest) -> None:
    # grafana/alerting signs into X-Grafana-Alert-Signature when the contact point leaves
    # the header empty; the docs say X-Grafana-Alerting-Signature. Both are read while
    # signature_header is not set.
    ingest.secret(GRAFANA_HMAC_SECRET, HMAC_SECRET)
    r = await ingest.send(FIRING, {"X-Grafana-Alert-Signature": sign(FIRING)})
    assert r.status_code == 200


@pytest.mark.parametrize(
    "signature",
    [
        sign(FIRING, secret="another-secret"),
        sign(FIRING + b" "),  # a body changed after signing
        sign(FIRING).upper(),  # Grafana sends lowercase hex
        "sha256=" + sign(FIRING),  # no prefix, unlike GitHub's
        sign(FIRING)[:-1],
        "",
    ],
)
async def test_a_bad_signature_is_401_and_stores_nothing(ingest: Ingest, signature: str) -> None:
    ingest.secret(GRAFANA_HMAC_SECRET, HMAC_SECRET)
    # The bearer token does not make up for a bad signature.
    r = await ingest.send(FIRING, {**BEARER, "X-Grafana-Alerting-Signature": signature})
    assert r.status_code == 401
    assert r.json()["error"] == "signature does not match the body"
    assert await ingest.inbox() == 0
    assert (
        ingest.sample("alert_router_alerts_received_total", outcome="accepted", source="grafana")
        == 0
    )


async def test_a_missing_signature_is_401_once_the_secret_exists(ingest: Ingest) -> None:
    # Before the secret: the bearer token is enough.
    assert (await ingest.send(FIRING, BEARER)).status_code == 200
    ingest.secret(GRAFANA_HMAC_SECRET, HMAC_SECRET)
    resolved = body_of(grafana_fixture("webhook-resolved.json"))
    r = await ingest.send(resolved, BEARER)
    assert r.status_code == 401
    assert r.json()["error"] == "missing signature header"
    assert await ingest.inbox() == 1
    assert (
        ingest.sample(
            "alert_router_webhooks_refused_total", reason="unauthorized", source="grafana"
        )
        == 1
    )
    # Alertmanager's webhooks are not Grafana's: the bearer token still lets them in.
    am = await ingest.send(body_of(fixture("alertmanager-webhook-v4.json")), BEARER)
    assert am.status_code == 200


async def test_neither_token_nor_signature_is_401_before_the_body(ingest: Ingest) -> None:
    ingest.secret(GRAFANA_HMAC_SECRET, HMAC_SECRET)
    r = await ingest.send(b"x" * 100, {"Content-Type": "text/plain"})
    assert r.status_code == 401


async def test_a_configured_signature_header_is_the_one_read(tmp_path: Path) -> None:
    ingest = make_ingest(tmp_path, GrafanaHmacSpec(signature_header="X-Signature"))
    ingest.secret(GRAFANA_HMAC_SECRET, HMAC_SECRET)
    await ingest.store.open()
    try:
        ok = await ingest.send(FIRING, {"x-signature": sign(FIRING)})
        assert ok.status_code == 200
        # Grafana's default names no longer count once another is configured.
        other = body_of(grafana_fixture("webhook-resolved.json"))
        r = await ingest.send(other, {**BEARER, "X-Grafana-Alerting-Signature": sign(other)})
        assert r.status_code == 401
    finally:
        await ingest.store.close()


async def test_a_reload_that_renames_the_header_applies_to_the_next_webhook(
    ingest: Ingest,
) -> None:
    ingest.secret(GRAFANA_HMAC_SECRET, HMAC_SECRET)
    assert (await ingest.send(FIRING, {"X-Grafana-Alerting-Signature": sign(FIRING)})).is_success
    ingest.hmac = GrafanaHmacSpec(signature_header="X-Signature")  # the rules reloaded
    other = body_of(grafana_fixture("webhook-resolved.json"))
    stale = await ingest.send(other, {**BEARER, "X-Grafana-Alerting-Signature": sign(other)})
    assert stale.status_code == 401
    assert (await ingest.send(other, {"X-Signature": sign(other)})).status_code == 200
    # And back: the default names count again.
    ingest.hmac = GrafanaHmacSpec()
    r = await ingest.send(other, {"X-Grafana-Alert-Signature": sign(other)})
    assert r.status_code == 200 and r.json()["duplicates"] == 1


async def test_a_good_timestamped_signature_is_accepted(stamped: Ingest) -> None:
    stamp = str(int(NOW) - 120)
    headers = {"X-Grafana-Alerting-Signature": sign(FIRING, timestamp=stamp), STAMP_HEADER: stamp}
    r = await stamped.send(FIRING, headers)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        (-300, True),  # the edge of the 5-minute window
        (-301, False),  # a replay past it
        (301, False),  # from the future (a clock far ahead) past it too
        (-86_400, False),
    ],
)
async def test_the_timestamp_must_be_within_five_minutes(
    stamped: Ingest, offset: int, accepted: bool
) -> None:
    stamp = str(int(NOW) + offset)
    headers = {"X-Grafana-Alerting-Signature": sign(FIRING, timestamp=stamp), STAMP_HEADER: stamp}
    r = await stamped.send(FIRING, headers)
    if accepted:
        assert r.status_code == 200
    else:
        assert r.status_code == 401
        assert r.json()["error"] == "signature timestamp outside the 5-minute window"
        assert await stamped.inbox() == 0


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        # Signed over the body alone while a timestamp is configured.
        ({"X-Grafana-Alerting-Signature": sign(FIRING)}, "missing signature timestamp header"),
        # The timestamp is part of what is signed: changing it breaks the signature.
        (
            {
                "X-Grafana-Alerting-Signature": sign(FIRING, timestamp=str(int(NOW))),
                STAMP_HEADER: str(int(NOW) - 1),
            },
            "signature does not match the body",
        ),
        (
            {"X-Grafana-Alerting-Signature": sign(FIRING, timestamp="now"), STAMP_HEADER: "now"},
            "signature timestamp is not a Unix time",
        ),
        ({STAMP_HEADER: str(int(NOW))}, "missing or wrong bearer token"),
    ],
)
async def test_timestamp_problems_are_401(
    stamped: Ingest, headers: dict[str, str], error: str
) -> None:
    r = await stamped.send(FIRING, headers)
    assert r.status_code == 401
    assert r.json()["error"] == error
    assert await stamped.inbox() == 0


async def test_secrets_appear_in_no_answer_or_log(
    stamped: Ingest, caplog: pytest.LogCaptureFixture
) -> None:
    stamped.secret(WEBHOOK_PASSWORD, PASSWORD)
    stamp = str(int(NOW))
    good = sign(FIRING, timestamp=stamp)
    caplog.set_level(logging.DEBUG)
    answers = [
        await stamped.send(
            FIRING, {"X-Grafana-Alerting-Signature": good[::-1], STAMP_HEADER: stamp}
        ),
        await stamped.send(FIRING, {"X-Grafana-Alerting-Signature": good, STAMP_HEADER: "1"}),
        await stamped.send(FIRING, basic("grafana", PASSWORD[:-1])),
        await stamped.send(FIRING, {**BEARER, STAMP_HEADER: stamp}),
    ]
    assert [a.status_code for a in answers] == [401] * 4
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for secret in (HMAC_SECRET, PASSWORD, TOKEN, good):
        assert all(secret not in a.text for a in answers)
        assert secret not in logged
    assert "signature" in logged
