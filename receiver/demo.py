"""`alert-router demo`: the main job, end to end, on this machine, sending nothing.

Starts the real server (uvicorn, SQLite store, dry-run notifiers) on a loopback port,
posts the five seed cost alerts firing, re-sends one as Alertmanager's HA peer would,
posts them resolved, and prints every notification that would have gone out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from receiver.app import Service
from receiver.logs import configure
from receiver.models import Notification
from receiver.runtime import build_service
from receiver.samples import SEED_ALERTS, webhook
from receiver.settings import Settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _rules_path() -> Path:
    settings = Settings()
    return settings.config


async def run_demo() -> int:
    configure("text", logging.WARNING)
    sent: list[tuple[str, Notification]] = []

    def emit(destination: str, batch: Sequence[Notification], body: dict[str, Any]) -> None:
        for notification in batch:
            sent.append((destination, notification))
            alert = notification.alert
            print(
                f"\n--> {destination}: {alert.status.upper()} {alert.name} "
                f"[{notification.reason.value}] via route {notification.route}"
            )
        if len(batch) > 1:
            print(f"    (one digest message for these {len(batch)} alerts)")
        print(json.dumps(body, indent=2, ensure_ascii=False))

    with tempfile.TemporaryDirectory(prefix="alert-router-demo-") as tmp:
        token = secrets.token_urlsafe(24)
        secrets_dir = Path(tmp) / "secrets"
        secrets_dir.mkdir()
        (secrets_dir / "webhook-token").write_text(token)
        port = _free_port()
        settings = Settings().model_copy(
            update={
                "config": _rules_path(),
                "state": str(Path(tmp) / "alert-router.db"),
                "secrets_dir": secrets_dir,
                "host": "127.0.0.1",
                "port": port,
            }
        )
        print("alert-router demo: dry-run, nothing is sent to Slack or PagerDuty")
        print(f"  rules: {settings.config}   state: SQLite in a temporary directory")
        print(f"  server: http://127.0.0.1:{port}/alerts (bearer token made for this run)")
        service = build_service(settings, dry_run=True, emit=emit)
        server = uvicorn.Server(
            uvicorn.Config(
                service.app(),
                host="127.0.0.1",
                port=port,
                log_config=None,
                access_log=False,
                lifespan="on",
            )
        )
        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                print("alert-router demo: the server did not start", flush=True)
                return 1
            await asyncio.sleep(0.05)
        url = f"http://127.0.0.1:{port}/alerts"
        headers = {"Authorization": f"Bearer {token}"}
        duplicates = 0
        try:
            async with httpx.AsyncClient(headers=headers, timeout=15) as client:
                start = time.time()
                firing = [webhook([alert]) for alert in SEED_ALERTS]
                print(f"\n== posting {len(firing)} firing webhooks (the five seed cost alerts)")
                for body in firing:
                    duplicates += await _post(client, url, body)
                print("== re-sending the first webhook, as the second Alertmanager of a HA pair")
                duplicates += await _post(client, url, firing[0])
                await _drain(service)
                print("\n== posting the same alerts resolved")
                for body in firing:
                    resolved = dict(body)
                    resolved["status"] = "resolved"
                    resolved["alerts"] = [
                        {**a, "status": "resolved", "endsAt": _now()} for a in body["alerts"]
                    ]
                    duplicates += await _post(client, url, resolved)
                await _drain(service)
                elapsed = time.time() - start
        finally:
            server.should_exit = True
            await serving
        by_dest = Counter(dest for dest, _ in sent)
        print("\n== summary")
        print(
            f"  webhooks posted: {len(firing) * 2 + 1}, alerts answered as duplicates: {duplicates}"
        )
        for dest, count in sorted(by_dest.items()):
            print(f"  {dest}: {count} notification(s) would have been sent")
        print(f"  done in {elapsed:.1f}s")
        return 0 if sent else 1


def _now() -> str:
    from datetime import UTC, datetime

    from receiver.models import format_time

    return format_time(datetime.now(UTC))


async def _post(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> int:
    response = await client.post(url, json=body)
    answer = response.json()
    print(f"   POST /alerts -> {response.status_code} {json.dumps(answer)}")
    response.raise_for_status()
    return int(answer.get("duplicates", 0))


async def _drain(service: Service, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        depths = await service.store.depths()
        if depths["inbox"] == 0 and depths["outbox"] == 0:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("the demo's notifications were not all delivered in time")
