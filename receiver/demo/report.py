"""The demo's cost report: `alert-router report NAME --dry-run --chart FILE` on the real chain.

Run as a person would run it, in a child process against the chain's Prometheus, so the
demo shows the command working rather than a copy of it. The chart is written to a
temporary file that outlives the demo, so it can be opened afterwards.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from receiver.config.rules import RulesError, load_rules
from receiver.config.settings import Settings

# Building a report starts Python and matplotlib and runs a few range queries.
_TIMEOUT = 60.0


async def show_report(rules_path: Path, prometheus_url: str) -> bool:
    """Print the first report of the rules, built from the chain's Prometheus, and write its
    chart; False (and why) when the command failed. True when the rules have no report."""
    try:
        reports = load_rules(rules_path).reports
    except RulesError:
        return True  # the router refused the same file already, and said why
    if not reports:
        print("\n== no report under reports: in the rules: nothing to show")
        return True
    name = next(iter(reports))
    handle, chart_name = tempfile.mkstemp(prefix="alert-router-report-", suffix=".png")
    os.close(handle)
    command = ["report", name, "--dry-run", "--chart", chart_name]
    if rules_path != Settings().config:
        command[2:2] = ["--config", str(rules_path)]
    print(f"\n== the cost report {name!r} now, from the chain's Prometheus; while a demo")
    print("   runs, the same command works from another terminal:")
    print(f"   $ PROMETHEUS_URL={prometheus_url} alert-router {shlex.join(command)}\n")
    env = {**os.environ, "PROMETHEUS_URL": prometheus_url}
    try:
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "receiver", *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        print(f"alert-router demo: the report took longer than {_TIMEOUT:.0f}s")
        return False
    print(result.stdout, end="")
    if result.returncode != 0:
        print(f"alert-router demo: the report failed:\n{result.stderr}", end="")
        return False
    print(f"   chart (PNG): {chart_name}")
    return True
