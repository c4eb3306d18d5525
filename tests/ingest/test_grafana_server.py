"""Grafana's webhook against the real server (uvicorn): PUT as well as POST, HMAC and Basic
as `serve` wires them, and the source label on /metrics."""

from __future__ import annotations

import base64

import httpx

from receiver.ingest.auth import GRAFANA_HMAC_SECRET, WEBHOOK_PASSWORD
from tests.ingest.grafana import HMAC_SECRET, PASSWORD, body_of, grafana_fixture, sign
from tests.ingest.support import AUTH, fixture, metric
from tests.service import ServerThread

JSON = {"Content-Type": "application/json"}
FIRING = body_of(grafana_fixture("webhook-firing.json"))
RESOLVED = body_of(grafana_fixture("webhook-resolved.json"))


def test_put_and_post_both_reach_ingest(client: httpx.Client) -> None:
    put = client.put("/alerts", content=FIRING, headers={**AUTH, **JSON})
    assert put.status_code == 200, put.text
    assert put.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    post = client.post("/alerts", content=FIRING, headers={**AUTH, **JSON})
    assert post.json() == {"accepted": 0, "duplicates": 1, "rejected": []}
    am = client.put("/alerts", json=fixture("alertmanager-webhook-v4.json"), headers=AUTH)
    assert am.status_code == 200
    received = "alert_router_alerts_received_total"
    assert metric(client, received, 'outcome="accepted",source="grafana"') == 1
    assert metric(client, received, 'outcome="duplicate",source="grafana"') == 1
    assert metric(client, received, 'outcome="accepted",source="alertmanager"') == 1
    assert metric(client, "alert_router_webhooks_total", 'code="200",source="grafana"') == 2


def test_other_methods_are_still_refused(client: httpx.Client) -> None:
    assert client.get("/alerts", headers=AUTH).status_code == 405
    assert client.delete("/alerts", headers=AUTH).status_code == 405


def test_serve_checks_grafanas_signature_and_basic(
    server: ServerThread, client: httpx.Client
) -> None:
    secrets = server.service.settings.secrets_dir
    (secrets / GRAFANA_HMAC_SECRET).write_text(HMAC_SECRET)
    (secrets / WEBHOOK_PASSWORD).write_text(PASSWORD)
    # Unsigned: refused, whatever the token says.
    unsigned = client.post("/alerts", content=FIRING, headers={**AUTH, **JSON})
    assert unsigned.status_code == 401
    assert (
        metric(
            client, "alert_router_webhooks_refused_total", 'reason="unauthorized",source="grafana"'
        )
        == 1
    )
    # Signed, with Basic: accepted, by PUT as Grafana may send it.
    user = base64.b64encode(f"grafana:{PASSWORD}".encode()).decode()
    signed = {"X-Grafana-Alerting-Signature": sign(FIRING), "Authorization": f"Basic {user}"}
    r = client.put("/alerts", content=FIRING, headers={**signed, **JSON})
    assert r.status_code == 200, r.text
    # A signature over another body is not this body's.
    bad = {"X-Grafana-Alerting-Signature": sign(FIRING)}
    assert client.post("/alerts", content=RESOLVED, headers={**bad, **JSON}).status_code == 401
