"""`alert-router demo`: the main job, end to end, on this machine, sending nothing.

Starts the real server (uvicorn, SQLite store, dry-run notifiers) on a loopback port and
prints every notification that would have gone out, with its cost context.

With Prometheus and Alertmanager installed (Debian's `prometheus` and
`prometheus-alertmanager`) it runs the real chain (receiver.demo.chain): a built-in
exporter of the platform's metrics, Prometheus evaluating rules/prometheus/cost-alerts.yaml,
and an HA pair of Alertmanagers posting to the router; the five seed cost alerts fire, the
second Alertmanager's copies are answered as duplicates, then the exporter's values recover
and the alerts resolve; then the rules' first cost report is built from that Prometheus
(`alert-router report NAME --dry-run --chart FILE`, printed). Without them it says so
and posts sample webhooks instead: the five alerts firing, one re-sent as an HA peer
would, then resolved.
`ALERT_ROUTER_DEMO=samples` asks for the sample webhooks even when both are installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from receiver.config.settings import Settings
from receiver.context.units import format_context
from receiver.demo.chain import (
    Binaries,
    Chain,
    ChainError,
    alert_rules_for,
    find_binaries,
    free_port,
)
from receiver.demo.history import write_history
from receiver.demo.report import show_report
from receiver.logs import configure
from receiver.models import Notification
from receiver.runtime import build_service
from receiver.samples import SEED_ALERTS, webhook
from receiver.server import Service

SEED_NAMES = tuple(labels["alertname"] for labels, _ in SEED_ALERTS)
_PHASE_TIMEOUT = 45.0


def _rules_path() -> Path:
    settings = Settings()
    return settings.config


class _Printer:
    """The dry-run notifiers' `emit`: prints each notification as it would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Notification]] = []

    def __call__(
        self, destination: str, batch: Sequence[Notification], body: dict[str, Any]
    ) -> None:
        for notification in batch:
            self.sent.append((destination, notification))
            alert = notification.alert
            print(
                f"\n--> {destination}: {alert.status.upper()} {alert.name} "
                f"[{notification.reason.value}] via route {notification.route}"
            )
            print(f"    cost context: {_context_line(notification)}")
        if len(batch) > 1:
            print(f"    (one digest message for these {len(batch)} alerts)")
        print(json.dumps(body, indent=2, ensure_ascii=False), flush=True)

    def names(self, status: str, destination: str | None = None) -> set[str]:
        return {
            n.alert.name
            for dest, n in self.sent
            if n.alert.status == status and (destination is None or dest == destination)
        }


def _context_line(notification: Notification) -> str:
    context = notification.context
    parts = [f"{v.title} {format_context(v)}" for v in context.values]
    if context.unavailable:
        parts.append(
            "unavailable: " + "; ".join(f"{name} ({why})" for name, why in context.unavailable)
        )
    return " · ".join(parts) or "none"


@contextlib.asynccontextmanager
async def _router(
    tmp: Path, printer: _Printer, prometheus_url: str | None = None, *, serve: bool = False
) -> AsyncIterator[tuple[Service, str, str]]:
    """The real server on a loopback port, dry-run; yields (service, /alerts URL, token).
    At the end it prints the web page's address and the password made for the run, and
    with `serve` keeps the server up until it is interrupted (Ctrl-C)."""
    token = secrets.token_urlsafe(24)
    password = secrets.token_urlsafe(12)
    secrets_dir = tmp / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "webhook-token").write_text(token)
    (secrets_dir / "ui-password").write_text(password)
    port = free_port()
    updates: dict[str, Any] = {
        "config": _rules_path(),
        "state": str(tmp / "alert-router.db"),
        "secrets_dir": secrets_dir,
        "host": "127.0.0.1",
        "port": port,
    }
    if prometheus_url is not None:
        updates["prometheus_url"] = prometheus_url
    settings = Settings().model_copy(update=updates)
    print(f"  rules: {settings.config}   state: SQLite in a temporary directory")
    print(f"  server: http://127.0.0.1:{port}/alerts (bearer token made for this run)")
    service = build_service(settings, dry_run=True, emit=printer)
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
            raise RuntimeError("the server did not start")
        await asyncio.sleep(0.05)
    try:
        yield service, f"http://127.0.0.1:{port}/alerts", token
        print("\n== what happened to each alert, and why")
        print(f"  web page: http://127.0.0.1:{port}/ui/   (any user name, password {password})")
        print(f"  API:      http://127.0.0.1:{port}/api/v1/alerts")
        print(
            f"  terminal: ALERT_ROUTER_STATE={settings.state} alert-router explain "
            "alertname=HighGPUCost"
        )
        if serve:
            print("  serving until Ctrl-C", flush=True)
            await serving
        else:
            print("  (up while the demo ran: `alert-router demo --serve` keeps it up after)")
    finally:
        server.should_exit = True
        await serving


async def run_demo(*, serve: bool = False) -> int:
    """The demo: the real chain when Prometheus and Alertmanager are installed, else
    sample webhooks; `serve`: the router stays up after it, for a person to look around."""
    configure("text", logging.WARNING)
    binaries = find_binaries()
    alert_rules = alert_rules_for(_rules_path())
    if os.environ.get("ALERT_ROUTER_DEMO", "").lower() == "samples":
        print("alert-router demo: ALERT_ROUTER_DEMO=samples: posting sample webhooks")
    elif binaries is None:
        print(
            "alert-router demo: prometheus and prometheus-alertmanager are not both installed,"
            " so this demo posts sample webhooks as Alertmanager would (for the real chain:"
            " apt-get install prometheus prometheus-alertmanager, or `make system-deps`)"
        )
    elif not alert_rules.is_file():
        print(f"alert-router demo: no alert rules at {alert_rules}: posting sample webhooks")
    else:
        code = await _chain_demo(binaries, alert_rules, serve=serve)
        if code is not None:
            return code
        print("\nalert-router demo: falling back to posting sample webhooks\n")
    return await _samples_demo(serve=serve)


# -- the real chain ---------------------------------------------------------------------


async def _chain_demo(binaries: Binaries, alert_rules: Path, *, serve: bool) -> int | None:
    """The demo on the real chain; None when the chain could not be started."""
    printer = _Printer()
    start = time.time()
    print("alert-router demo: the real chain on this machine, dry-run: nothing is sent")
    print("  exporter (sample values) -> Prometheus -> 2 Alertmanagers (HA pair, gossip off)")
    print("  -> alert-router -> Slack and PagerDuty (printed here instead of sent)")
    with tempfile.TemporaryDirectory(prefix="alert-router-demo-") as tmp_name:
        tmp = Path(tmp_name)
        # Ports first: the router needs Prometheus' URL, Alertmanager the router's.
        prometheus_port = free_port()
        prometheus_url = f"http://127.0.0.1:{prometheus_port}"
        async with _router(tmp, printer, prometheus_url, serve=serve) as (service, url, token):
            chain = Chain(binaries, tmp / "chain", alert_rules, url, token, prometheus_port)
            print(f"  Prometheus: {chain.prometheus_url} evaluating {alert_rules} (for: 1s)")
            print("  Alertmanagers: " + ", ".join(a.url for a in chain.alertmanagers))
            try:
                await asyncio.to_thread(write_history, binaries.promtool, chain.prometheus_data)
                print("\n== starting the exporter, Prometheus and two Alertmanagers")
                try:
                    await asyncio.to_thread(chain.start)
                except ChainError as exc:
                    print(f"alert-router demo: {exc}")
                    return None
                print("== waiting for the five seed cost alerts to fire (about 10 seconds)")
                ok = await _phase(service, printer, "firing")
                if ok:
                    print("\n== the platform recovers: the exporter now serves healthy values")
                    chain.exporter.recover()
                    ok = await _phase(service, printer, "resolved")
                if ok:
                    ok = await show_report(_rules_path(), chain.prometheus_url)
            finally:
                await asyncio.to_thread(chain.stop)
            received = _sample(service, "alert_router_alerts_received_total")
            duplicates = int(
                _sample(service, "alert_router_alerts_received_total", outcome="duplicate")
            )
            webhooks = int(_sample(service, "alert_router_webhooks_total", code="200"))
            # Inside: the web page's address comes last, and stays up with --serve.
            _summary(
                printer,
                f"webhooks received from Alertmanager: {webhooks}, alerts answered as "
                f"duplicates: {duplicates} (of {int(received)}: the HA pair sends every alert "
                "twice)",
                time.time() - start,
            )
    return 0 if ok and printer.sent else 1


async def _phase(service: Service, printer: _Printer, status: str) -> bool:
    """Wait until each seed alert's `status` notification went out, both Alertmanagers'
    copies arrived, and nothing is left to do; False (and why) after the timeout."""
    copies = 2 * len(SEED_NAMES) * (1 if status == "firing" else 2)
    deadline = time.monotonic() + _PHASE_TIMEOUT
    while time.monotonic() < deadline:
        received = _sample(service, "alert_router_alerts_received_total")
        depths = await service.store.depths()
        if (
            printer.names(status) >= set(SEED_NAMES)
            and received >= copies
            and depths["inbox"] == 0
            and depths["outbox"] == 0
        ):
            return True
        await asyncio.sleep(0.2)
    missing = sorted(set(SEED_NAMES) - printer.names(status))
    print(
        f"alert-router demo: not every alert was {status} within {_PHASE_TIMEOUT:.0f}s"
        f" (missing: {', '.join(missing) or 'none'})"
    )
    return False


def _sample(service: Service, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include `labels`."""
    total = 0.0
    for family in service.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def _summary(printer: _Printer, received: str, elapsed: float) -> None:
    by_dest = Counter(dest for dest, _ in printer.sent)
    print("\n== summary")
    print(f"  {received}")
    for dest, count in sorted(by_dest.items()):
        print(f"  {dest}: {count} notification(s) would have been sent")
    print(f"  done in {elapsed:.1f}s")


# -- sample webhooks (no Prometheus or Alertmanager here) -------------------------------


async def _samples_demo(*, serve: bool) -> int:
    printer = _Printer()
    print("alert-router demo: dry-run, nothing is sent to Slack or PagerDuty")
    with tempfile.TemporaryDirectory(prefix="alert-router-demo-") as tmp_name:
        duplicates = 0
        async with _router(Path(tmp_name), printer, serve=serve) as (service, url, token):
            headers = {"Authorization": f"Bearer {token}"}
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
            _summary(
                printer,
                f"webhooks posted: {len(firing) * 2 + 1}, alerts answered as duplicates: "
                f"{duplicates}",
                elapsed,
            )
    return 0 if printer.sent else 1


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
