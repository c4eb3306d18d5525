"""POST /alerts and its bearer token, against the real server."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from receiver.ingest.auth import TOKEN_RECHECK_SECONDS
from tests.ingest.support import AUTH, fixture
from tests.service import TOKEN, ServerThread, make_settings, start_service


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong-token",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Bearer{TOKEN}",
        f"Token {TOKEN}",
        TOKEN,
    ],
)
def test_auth_bypass_attempts_are_401(client: httpx.Client, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    r = client.post("/alerts", json=fixture("alertmanager-webhook-v4.json"), headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in r.text


def test_auth_is_checked_before_anything_else(client: httpx.Client) -> None:
    r = client.post("/alerts", content=b"x" * 100, headers={"Content-Type": "text/plain"})
    assert r.status_code == 401


def test_scheme_is_case_insensitive(client: httpx.Client) -> None:
    r = client.post(
        "/alerts",
        json=fixture("alertmanager-webhook-v4.json"),
        headers={"Authorization": f"bearer {TOKEN}"},
    )
    assert r.status_code == 200


def test_no_auth_mode_accepts_without_token(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, Path("rules/routes.yaml"))
    running, _ = start_service(settings, auth=False)
    try:
        r = httpx.post(f"{running.url}/alerts", json=fixture("alertmanager-webhook-v4.json"))
        assert r.status_code == 200
    finally:
        running.stop()


def test_token_rotation_without_restart(server: ServerThread) -> None:
    token_file = server.service.settings.secrets_dir / "webhook-token"
    token_file.write_text("rotated-token-abcdef")
    later = time.time() + 5
    os.utime(token_file, (later, later))
    body = fixture("alertmanager-webhook-v4.json")
    rotated = {"Authorization": "Bearer rotated-token-abcdef"}
    # The new token works at once; the old one for at most TOKEN_RECHECK_SECONDS more.
    assert httpx.post(f"{server.url}/alerts", json=body, headers=rotated).status_code == 200
    time.sleep(TOKEN_RECHECK_SECONDS + 0.1)
    old = httpx.post(f"{server.url}/alerts", json=body, headers=AUTH)
    new = httpx.post(f"{server.url}/alerts", json=body, headers=rotated)
    assert (old.status_code, new.status_code) == (401, 200)
