"""What the Grafana ingest tests share: the fixtures, Grafana's signing as grafana/alerting
does it (http/hmac.go), and the webhook endpoint on a real SQLite store, called in-process."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from receiver.config.schema import GrafanaHmacSpec
from receiver.config.secrets import SecretStore
from receiver.ingest.auth import WebhookAuth
from receiver.ingest.endpoint import AlertsEndpoint
from receiver.metrics import Metrics
from receiver.models import Alert
from receiver.store.sqlite.store import SqliteStore
from tests.service import TOKEN

GRAFANA = Path(__file__).resolve().parents[1] / "data" / "grafana"
HMAC_SECRET = "grafana-hmac-secret-0123456789"
PASSWORD = "basic-password-0123456789"
# A fixed clock for the endpoint: signatures are made at this time unless a test says.
NOW = 1_715_680_000.0


def grafana_fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GRAFANA / name).read_text())
    return data


def body_of(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def sign(body: bytes, secret: str = HMAC_SECRET, timestamp: str | None = None) -> str:
    """Grafana's signature: hex HMAC-SHA256 of the body, or of `timestamp:body`."""
    digest = hmac.new(secret.encode(), digestmod=hashlib.sha256)
    if timestamp is not None:
        digest.update(timestamp.encode())
        digest.update(b":")
    digest.update(body)
    return digest.hexdigest()


@dataclass
class Ingest:
    """The webhook endpoint with every kind of authentication, on a real store."""

    endpoint: AlertsEndpoint
    store: SqliteStore
    metrics: Metrics
    secrets_dir: Path
    hmac: GrafanaHmacSpec

    async def send(
        self,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        method: str = "POST",
    ) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.endpoint)
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
            return await client.request(
                method,
                "/alerts",
                content=body,
                headers={"Content-Type": "application/json", **(headers or {})},
            )

    async def stored(self) -> list[Alert]:
        """Every alert in the inbox, oldest first."""
        items = await self.store.claim_inbox(1000, NOW + 10_000, 1.0)
        return [item.alert for item in items]

    async def inbox(self) -> int:
        """How many alerts wait in the inbox (what ingest stored)."""
        return (await self.store.depths())["inbox"]

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)

    def secret(self, key: str, value: str) -> None:
        (self.secrets_dir / key).write_text(value)


def make_ingest(tmp_path: Path, hmac_spec: GrafanaHmacSpec | None = None) -> Ingest:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir(exist_ok=True)
    (secrets_dir / "webhook-token").write_text(TOKEN)
    spec = hmac_spec if hmac_spec is not None else GrafanaHmacSpec()
    secrets = SecretStore(secrets_dir, environ={})
    metrics = Metrics(CollectorRegistry())
    store = SqliteStore(str(tmp_path / "state.db"))
    made: Ingest | None = None

    def current() -> GrafanaHmacSpec:
        # Read at each webhook, as the rules holder's is: replacing `hmac` is a reload.
        return made.hmac if made is not None else spec

    auth = WebhookAuth.from_secrets(secrets, current, clock=lambda: NOW)
    endpoint = AlertsEndpoint(
        store=store,
        metrics=metrics,
        auth=auth,
        max_body_bytes=1024 * 1024,
        dedup_window=60.0,
        clock=lambda: NOW,
    )
    made = Ingest(endpoint, store, metrics, secrets_dir, spec)
    return made
