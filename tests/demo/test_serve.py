"""`alert-router demo --serve`: after the run the router stays up, and its web page shows
what happened to each seed alert, with the password the demo printed; Ctrl-C ends it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading

import httpx

from tests.support import wait_until

SEEDS = ("BudgetThresholdExceeded", "HighGPUCost", "LowGPUUtilization", "HighCostPerJob", "IdleGPU")


def test_demo_serve_keeps_the_page_up_until_ctrl_c() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ALERT_ROUTER_", "SLACK_", "PAGERDUTY_", "WEBHOOK_"))
    }
    env["ALERT_ROUTER_DEMO"] = "samples"  # the quick demo: sample webhooks
    proc = subprocess.Popen(
        [sys.executable, "-m", "receiver", "demo", "--serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("serving until Ctrl-C" in line for line in lines), timeout=120)
        out = "".join(lines)
        found = re.search(r"web page: (http://127\.0\.0\.1:\d+)/ui/ .*password (\S+)\)", out)
        assert found, out
        base, password = found.group(1), found.group(2)
        # Still up after the run, behind the password it printed.
        assert httpx.get(f"{base}/ui/", timeout=10).status_code == 401
        page = httpx.get(f"{base}/ui/alerts", auth=("visitor", password), timeout=10)
        assert page.status_code == 200
        for name in SEEDS:
            assert name in page.text
        api = httpx.get(f"{base}/api/v1/alerts", auth=("visitor", password), timeout=10)
        assert {a["alertname"] for a in api.json()["alerts"]} >= set(SEEDS)
        proc.send_signal(signal.SIGINT)
        # Ctrl-C's exit status, as a shell reports it (128 + SIGINT), and no traceback.
        assert proc.wait(timeout=20) == 130
        reader.join(timeout=5)
        assert "Traceback" not in "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        reader.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
