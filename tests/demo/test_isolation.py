"""The demo starts Prometheus and Alertmanager binaries: it must never ride along with `serve`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx

from tests.support import free_port

SECRET_ENV = {
    "SLACK_WEBHOOK_URL": "https://hooks.slack.invalid/services/T0/B0/secretpart",
    "PAGERDUTY_KEY": "0123456789abcdef0123456789abcdef",
    "WEBHOOK_TOKEN": "isolation-test-token",
}


def test_serve_never_imports_the_demo(tmp_path: Path) -> None:
    # -X importtime makes Python name every module it imports on stderr: the real `serve`
    # command, started until it is ready and has taken a webhook, imports no receiver.demo.
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ALERT_ROUTER_", "SLACK_", "PAGERDUTY_", "WEBHOOK_"))
    }
    env.update(SECRET_ENV)
    env.update(
        {
            "ALERT_ROUTER_SECRETS_DIR": str(tmp_path / "no-secrets"),
            "ALERT_ROUTER_STATE": str(tmp_path / "state.db"),
            "ALERT_ROUTER_PORT": str(port),
            "ALERT_ROUTER_HOST": "127.0.0.1",
            "PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
        }
    )
    # The import log goes to a file: it outgrows a pipe's buffer, and an unread pipe
    # would stop `serve` at its next write.
    log_path = tmp_path / "serve.err"
    log_file = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "receiver", "serve", "--dry-run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log_file,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"serve exited early: {log_path.read_text()[-2000:]}"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not become ready"
            time.sleep(0.1)
        answer = httpx.post(
            f"http://127.0.0.1:{port}/alerts",
            json={
                "version": "4",
                "alerts": [
                    {
                        "status": "firing",
                        "labels": {"alertname": "X"},
                        "startsAt": "2026-12-01T00:00:00Z",
                    }
                ],
            },
            headers={"Authorization": f"Bearer {SECRET_ENV['WEBHOOK_TOKEN']}"},
            timeout=5,
        )
        assert answer.status_code == 200, answer.text
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log_file.close()
    stderr = log_path.read_text()
    imported = [
        line.rsplit("|", 1)[-1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:")
    ]
    ours = {name.strip() for name in imported if name.strip().startswith("receiver")}
    # The check can only mean something if the import log names the service's own modules.
    assert {"receiver.cli", "receiver.server", "receiver.runtime"} <= ours
    assert not [name for name in ours if name.startswith("receiver.demo")]


def test_an_installation_without_the_demo_says_so(tmp_path: Path) -> None:
    # The container image deletes receiver/demo (Dockerfile); `demo` then explains itself.
    package = Path(__file__).resolve().parents[2] / "receiver"
    shutil.copytree(
        package, tmp_path / "receiver", ignore=shutil.ignore_patterns("demo", "__pycache__")
    )
    # -S: no .pth files, so the editable install's finder cannot bring the full tree back.
    site_packages = sysconfig.get_paths()["purelib"]
    result = subprocess.run(
        [sys.executable, "-S", "-m", "receiver", "demo"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{site_packages}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "alert-router demo: not part of this installation" in result.stderr
    assert "Traceback" not in result.stderr
