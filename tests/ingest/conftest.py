"""The real service (uvicorn on a loopback port) for the ingest tests, and a client for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.service import ServerThread, make_settings, start_service


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    settings = make_settings(
        tmp_path,
        Path("rules/routes.yaml"),
        max_body_bytes=64 * 1024,
        sqlite_busy_timeout=0.3,
    )
    running, _ = start_service(settings)
    yield running
    running.stop()


@pytest.fixture
def client(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c
