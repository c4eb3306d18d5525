"""POST /alerts against the real server: every row of DESIGN.md's HTTP table but the
token's (test_auth.py)."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.ingest.support import AUTH, fixture, metric
from tests.service import TOKEN, ServerThread
from tests.support import wait_until


def test_accepts_real_alertmanager_payload(client: httpx.Client) -> None:
    r = client.post("/alerts", json=fixture("alertmanager-webhook-v4-group.json"), headers=AUTH)
    assert r.status_code == 200
    assert r.json() == {"accepted": 3, "duplicates": 0, "rejected": []}
    assert (
        metric(
            client, "alert_router_alerts_received_total", 'outcome="accepted",source="alertmanager"'
        )
        == 3
    )


def test_the_last_webhook_gauge_is_the_time_of_the_last_accepted_webhook(
    client: httpx.Client,
) -> None:
    name = "alert_router_last_webhook_timestamp_seconds"
    assert metric(client, name) == 0
    body = fixture("alertmanager-webhook-v4.json")
    before = time.time()
    assert client.post("/alerts", json=body, headers=AUTH).status_code == 200
    after = time.time()
    stamped = metric(client, name)
    assert before <= stamped <= after
    # A duplicate is an accepted webhook too; a refused one is not.
    assert client.post("/alerts", json=body, headers=AUTH).json()["duplicates"] == 1
    again = metric(client, name)
    assert again >= after
    assert client.post("/alerts", json=body).status_code == 401
    assert (
        client.post(
            "/alerts", content=b"{", headers={**AUTH, "Content-Type": "application/json"}
        ).status_code
        == 400
    )
    assert metric(client, name) == again


def test_exact_copy_within_window_is_a_duplicate(client: httpx.Client) -> None:
    body = fixture("alertmanager-webhook-v4.json")
    assert client.post("/alerts", json=body, headers=AUTH).json()["accepted"] == 1
    again = client.post("/alerts", json=body, headers=AUTH).json()
    assert again == {"accepted": 0, "duplicates": 1, "rejected": []}
    # The resolve of the same episode is not a copy of the firing.
    resolved = client.post(
        "/alerts", json=fixture("alertmanager-webhook-v4-resolved.json"), headers=AUTH
    )
    assert resolved.json()["accepted"] == 1
    assert (
        metric(
            client,
            "alert_router_alerts_received_total",
            'outcome="duplicate",source="alertmanager"',
        )
        == 1
    )


def test_unknown_fields_are_ignored(client: httpx.Client) -> None:
    body = fixture("alertmanager-webhook-v4.json")
    body["routeLabels"] = {"receiver": "x"}
    body["notification_reason"] = "repeat"
    body["alerts"][0]["somethingNew"] = {"nested": [1, 2]}
    r = client.post("/alerts", json=body, headers=AUTH)
    assert r.status_code == 200 and r.json()["accepted"] == 1


def test_invalid_alerts_are_rejected_and_the_rest_accepted(client: httpx.Client) -> None:
    body = fixture("alertmanager-webhook-v4-group.json")
    good = body["alerts"][0]
    body["alerts"] = [
        good,
        {**good, "labels": {}},  # no labels
        "not an object",
        {**good, "labels": {"severity": "x"}},  # no alertname
        {**good, "startsAt": "yesterday"},  # bad timestamp
        {**good, "status": "pending"},  # unknown status
        {k: v for k, v in good.items() if k != "status"},  # missing status
    ]
    r = client.post("/alerts", json=body, headers=AUTH)
    assert r.status_code == 200
    answer = r.json()
    assert answer["accepted"] == 1
    assert [item["index"] for item in answer["rejected"]] == [1, 2, 3, 4, 5, 6]
    reasons = [item["reason"] for item in answer["rejected"]]
    assert "labels" in reasons[0]
    assert reasons[1] == "alert must be a JSON object"
    assert "alertname" in reasons[2]
    assert "startsAt" in reasons[3]
    assert "status" in reasons[4] and "status" in reasons[5]
    assert (
        metric(
            client,
            "alert_router_alerts_rejected_total",
            'reason="invalid_alert",source="alertmanager"',
        )
        == 6
    )


def test_only_invalid_alerts_is_400(client: httpx.Client) -> None:
    body = fixture("alertmanager-webhook-v4.json")
    body["alerts"] = [{"status": "firing", "labels": {}}]
    r = client.post("/alerts", json=body, headers=AUTH)
    assert r.status_code == 400
    assert r.json()["error"] == "no valid alert in the webhook"
    assert r.json()["details"][0]["index"] == 0


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"{not json", "body is not valid JSON"),
        (b"[1, 2]", "body must be a JSON object (Alertmanager webhook)"),
        (b'"text"', "body must be a JSON object (Alertmanager webhook)"),
        (b'{"version": "4"}', "body has no 'alerts' list"),
        (b'{"version": "4", "alerts": {"a": 1}}', "body has no 'alerts' list"),
        (b'{"version": "3", "alerts": []}', "unsupported webhook version '3'"),
        (b"", "body is not valid JSON"),
    ],
)
def test_bad_bodies_are_400(client: httpx.Client, content: bytes, error: str) -> None:
    r = client.post(
        "/alerts", content=content, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"] == error
    assert isinstance(r.json()["details"], list)


def test_empty_alert_list_is_fine(client: httpx.Client) -> None:
    r = client.post("/alerts", json={"version": "4", "alerts": []}, headers=AUTH)
    assert r.json() == {"accepted": 0, "duplicates": 0, "rejected": []}


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", None])
def test_content_type_must_be_json(server: ServerThread, ctype: str | None) -> None:
    headers = dict(AUTH)
    if ctype:
        headers["Content-Type"] = ctype
    r = httpx.post(
        f"{server.url}/alerts",
        content=json.dumps(fixture("alertmanager-webhook-v4.json")).encode(),
        headers=headers,
    )
    assert r.status_code == 415


def test_json_with_charset_is_fine(client: httpx.Client) -> None:
    r = client.post(
        "/alerts",
        content=json.dumps(fixture("alertmanager-webhook-v4.json")).encode(),
        headers={**AUTH, "Content-Type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 200


def test_declared_oversize_body_is_413_without_reading_it(server: ServerThread) -> None:
    # Declare 10 MiB, send only the head: a server that read the whole body would wait.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /alerts HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 10485760\r\n\r\n{"
        )
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413")


def test_streamed_oversize_body_is_413(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(200):
            yield b" " * 4096  # 800 KiB in all, over the 64 KiB limit of this server

    r = client.post(
        "/alerts", content=chunks(), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert r.status_code == 413
    assert "larger than 65536 bytes" in r.json()["error"]


def test_store_that_cannot_write_answers_503(server: ServerThread, tmp_path: Path) -> None:
    # Another process holds the database's write lock past the busy timeout.
    blocker = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        r = httpx.post(
            f"{server.url}/alerts", json=fixture("alertmanager-webhook-v4.json"), headers=AUTH
        )
        assert r.status_code == 503
        assert r.json()["error"] == "store unavailable; retry"
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    # Alertmanager retries the 503: the alert then lands.
    r = httpx.post(
        f"{server.url}/alerts", json=fixture("alertmanager-webhook-v4.json"), headers=AUTH
    )
    assert r.status_code == 200 and r.json()["accepted"] == 1
    assert httpx.get(f"{server.url}/readyz").status_code == 200


def test_accepted_alert_is_stored_before_the_answer(server: ServerThread) -> None:
    r = httpx.post(
        f"{server.url}/alerts", json=fixture("alertmanager-webhook-v4.json"), headers=AUTH
    )
    assert r.status_code == 200
    # Read the file from another connection right after the 200: the alert is there,
    # in the inbox, or already routed into the outbox or the ledger.
    db = sqlite3.connect(Path(server.service.settings.state))
    try:
        rows = sum(
            db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
            for t in ("inbox", "outbox", "ledger")
        )
    finally:
        db.close()
    assert rows >= 1


def test_many_concurrent_webhooks_all_land(server: ServerThread) -> None:
    body = fixture("alertmanager-webhook-v4.json")
    results: list[int] = []

    def post(i: int) -> None:
        b = json.loads(json.dumps(body))
        b["alerts"][0]["fingerprint"] = f"fp{i:04d}"
        r = httpx.post(f"{server.url}/alerts", json=b, headers=AUTH, timeout=15)
        results.append(r.json()["accepted"])

    threads = [threading.Thread(target=post, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 40
    wait_until(lambda: server.call(server.service.store.depths)["inbox"] == 0, timeout=10)
