"""Driving the app in-process for the fuzz tests: its lifespan and a client on one event
loop, and a store that records what ingest stored and fails on demand."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.types import ASGIApp, Message, Scope

from receiver.models import Alert
from receiver.server import Service
from receiver.store.base import IngestResult, Store, StoreError
from tests.service import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


@dataclass
class RecordingStore:
    """The real store, recording every alert ingest stored; `failing` makes writes fail."""

    inner: Store
    stored: list[Alert] = field(default_factory=list)
    failing: bool = False

    async def ingest(self, alerts: Sequence[Alert], now: float, window: float) -> IngestResult:
        if self.failing:
            raise StoreError("disk full (injected)")
        result = await self.inner.ingest(alerts, now, window)
        self.stored.extend(alerts)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Router:
    """The running service and a client for it, on one event loop."""

    def __init__(
        self,
        service: Service,
        store: RecordingStore,
        runner: asyncio.Runner,
        client: httpx.AsyncClient,
    ) -> None:
        self.service = service
        self.store = store
        self.runner = runner
        self.client = client

    def __repr__(self) -> str:
        # Hypothesis prints the test's arguments, this fixture too: keep it short.
        return "Router(in-process alert-router)"

    def post(
        self,
        body: bytes | list[bytes],
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """POST /alerts; a list of chunks is sent chunked, without Content-Length."""

        async def chunks(parts: list[bytes]) -> AsyncIterator[bytes]:
            for part in parts:
                yield part

        async def send() -> httpx.Response:
            content = chunks(body) if isinstance(body, list) else body
            return await self.client.post(
                "/alerts", content=content, headers=AUTH if headers is None else headers
            )

        return self.runner.run(send())

    def post_json(self, payload: Any) -> httpx.Response:
        # The standard library's encoder: it writes integers of any size (orjson refuses).
        return self.post(json.dumps(payload, ensure_ascii=False).encode())

    def depths(self) -> dict[str, int]:
        return self.runner.run(self.store.inner.depths())


@contextlib.asynccontextmanager
async def running(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    """The app's lifespan, driven as a server drives it (ASGI lifespan messages), and a
    client that talks to the app in-process."""
    to_app: asyncio.Queue[Message] = asyncio.Queue()
    from_app: asyncio.Queue[Message] = asyncio.Queue()
    scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}

    async def serve() -> None:
        await app(scope, to_app.get, from_app.put)

    task = asyncio.create_task(serve())
    await to_app.put({"type": "lifespan.startup"})
    started = await from_app.get()
    assert started["type"] == "lifespan.startup.complete", started
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
            yield client
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        stopped = await from_app.get()
        await task
        assert stopped["type"] == "lifespan.shutdown.complete", stopped
