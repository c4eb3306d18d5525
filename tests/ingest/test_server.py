"""The service's other endpoints, against the real server: health, readiness, metrics."""

from __future__ import annotations

import httpx


def test_health_readiness_metrics(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    text = client.get("/metrics").text
    # Every destination x outcome series exists before the first notification.
    for dest in ("finops-slack", "oncall"):
        for outcome in ("delivered", "retried", "dead_letter"):
            assert (
                f'alert_router_notifications_total{{destination="{dest}",outcome="{outcome}"}} 0.0'
                in text
            )
    assert "alert_router_config_last_reload_successful 1.0" in text
