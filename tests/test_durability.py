"""A 200 means stored: SIGKILL right after it, restart, and the alert is still processed."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from receiver.samples import SEED_ALERTS, webhook
from tests.service import TOKEN, ServerProcess, make_settings
from tests.support import HangingServer, wait_until

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def processes() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for proc in started:
        proc.stop()


def ledger_rows(state: str) -> int:
    db = sqlite3.connect(state)
    try:
        return int(db.execute("SELECT count(*) FROM ledger").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def sent_alertnames(proc: ServerProcess) -> list[str]:
    return [
        entry["alertname"] for entry in proc.logs() if entry.get("message") == "dry-run: would send"
    ]


def test_sigkill_after_200_loses_nothing(tmp_path: Path, processes: list[ServerProcess]) -> None:
    # Prometheus hangs: routing waits for the context timeout, so the kill lands while
    # the accepted alerts are only in the store.
    prometheus = HangingServer()
    settings = make_settings(tmp_path, Path("rules/routes.yaml"), prometheus_url=prometheus.url)
    first = ServerProcess(settings, "--dry-run")
    processes.append(first)
    first.wait_ready()
    bodies: list[dict[str, Any]] = [webhook([alert]) for alert in SEED_ALERTS]
    for body in bodies:
        r = httpx.post(f"{first.url}/alerts", json=body, headers=AUTH, timeout=10)
        assert r.status_code == 200 and r.json()["accepted"] == 1
    first.kill()
    prometheus.close()
    assert first.proc.returncode == -9
    assert sent_alertnames(first) == []

    second = ServerProcess(
        settings.model_copy(update={"prometheus_url": "http://127.0.0.1:9"}), "--dry-run"
    )
    processes.append(second)
    second.wait_ready()
    # Each seed alert reaches every destination its route names: BudgetThresholdExceeded
    # (critical) goes to oncall and finops-slack, the four others to finops-slack.
    wait_until(lambda: ledger_rows(settings.state) == 6, timeout=30)
    names = sent_alertnames(first) + sent_alertnames(second)
    assert sorted(set(names)) == sorted(labels["alertname"] for labels, _ in SEED_ALERTS)


def test_sighup_reloads_and_bad_file_is_refused(
    tmp_path: Path, processes: list[ServerProcess]
) -> None:
    config = tmp_path / "routes.yaml"
    config.write_text(Path("rules/routes.yaml").read_text())
    settings = make_settings(tmp_path, config)
    proc = ServerProcess(settings, "--dry-run")
    processes.append(proc)
    proc.wait_ready()
    config.write_text("destinations: {}\nroutes: [\n")
    import signal

    proc.proc.send_signal(signal.SIGHUP)
    wait_until(
        lambda: any(e.get("message", "").startswith("rules reload refused") for e in proc.logs()),
        timeout=10,
    )
    refused = next(e for e in proc.logs() if e.get("message", "").startswith("rules reload"))
    assert refused["trigger"] in ("SIGHUP", "file changed")
    metrics = httpx.get(f"{proc.url}/metrics").text
    assert "alert_router_config_last_reload_successful 0.0" in metrics
    # The old rules keep serving: the service is still ready and routes alerts.
    assert httpx.get(f"{proc.url}/readyz").status_code == 200
    r = httpx.post(f"{proc.url}/alerts", json=webhook([SEED_ALERTS[0]]), headers=AUTH)
    assert r.status_code == 200
    wait_until(lambda: len(sent_alertnames(proc)) >= 1, timeout=15)
    print(json.dumps(refused))
