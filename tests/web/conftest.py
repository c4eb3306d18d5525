"""The page and the API on a real SqliteStore (`web`) or Redis (`redis_web`), served in the
test's event loop through httpx's ASGI transport: `web.client` is signed in, `web.anonymous`
is not."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from receiver.config.reloader import RulesHolder
from receiver.config.secrets import SecretStore
from receiver.config.settings import Settings
from receiver.events import EpisodeMeta, Event
from receiver.metrics import Metrics
from receiver.store.base import Store
from receiver.store.redis.store import RedisStore
from receiver.store.sqlite.store import SqliteStore
from receiver.web.app import WebDeps, web_routes
from tests.fakes.redis import RedisServer

PASSWORD = "correct horse battery staple"
BASE = "http://router.test"
NOW = 1_772_500_000.0  # 2026-03-03, a day after the seeds' T0

RULES = """
destinations:
  finops-slack: {slack: {webhook_url: {secret: slack-webhook-url}}}
  oncall: {pagerduty: {routing_key: {secret: pagerduty-key}}}
context:
  cost_per_hour: {query: 'sum by (service) (service_cost_per_hour)', unit: usd_per_hour}
routes:
  - name: gpu-page
    matchers: ['alertname="HighGPUCost"']
    when: {cost_per_hour: "> 100"}
    to: [oncall]
    continue: true
  - name: gpu-costs
    matchers: ['alertname=~"HighGPUCost|IdleGPU"']
    to: [finops-slack]
default: finops-slack
"""


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class Web:
    store: Store
    secrets_dir: Path
    client: httpx.AsyncClient
    anonymous: httpx.AsyncClient
    recorded: list[tuple[Event, EpisodeMeta | None]] = field(default_factory=list)

    def set_password(self, password: str | None) -> None:
        path = self.secrets_dir / "ui-password"
        if password is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(password)


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, store: Store) -> AsyncIterator[Web]:
    rules = tmp_path / "routes.yaml"
    rules.write_text(RULES)
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "ui-password").write_text(PASSWORD)
    holder = RulesHolder(rules, Metrics(CollectorRegistry()))
    holder.load()
    await store.open()
    recorded: list[tuple[Event, EpisodeMeta | None]] = []
    deps = WebDeps(
        store=store,
        rules=lambda: holder.rules,
        holder=holder,
        secrets=SecretStore(secrets_dir, environ={}),
        settings=Settings().model_copy(update={"config": rules, "secrets_dir": secrets_dir}),
        record=lambda event, meta: recorded.append((event, meta)),
        clock=lambda: NOW,
    )
    app = Starlette(routes=web_routes(deps))
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": basic("oncall-amy", PASSWORD)}
    try:
        async with (
            httpx.AsyncClient(transport=transport, base_url=BASE, headers=headers) as client,
            httpx.AsyncClient(transport=transport, base_url=BASE) as anonymous,
        ):
            yield Web(store, secrets_dir, client, anonymous, recorded)
    finally:
        await store.close()


@pytest.fixture
async def web(tmp_path: Path) -> AsyncIterator[Web]:
    async with serving(tmp_path, SqliteStore(tmp_path / "state.db")) as served:
        yield served


@pytest.fixture
async def redis_web(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Web]:
    async with serving(tmp_path, RedisStore(redis_server.url)) as served:
        yield served
