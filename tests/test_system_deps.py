"""scripts/install-system-deps: what `make demo` and `make test` install on a fresh machine."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "install-system-deps"


def bare_path(tmp_path: Path) -> str:
    """A PATH with only what the script itself runs: no prometheus, redis-server or wrk."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "sort", "id", "env"):
        found = shutil.which(tool)
        assert found is not None, tool
        (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def would_install(tmp_path: Path, *args: str) -> list[str]:
    result = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", *args],
        env={**os.environ, "PATH": bare_path(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.split()


def test_the_demo_installs_what_the_real_chain_needs(tmp_path: Path) -> None:
    # A fresh machine: the demo's real chain needs Prometheus and Alertmanager, nothing more.
    assert would_install(tmp_path, "demo") == ["prometheus", "prometheus-alertmanager"]


def test_the_tests_install_redis_wrk_and_chromium_too(tmp_path: Path) -> None:
    assert would_install(tmp_path) == [
        "chromium",
        "chromium-driver",
        "prometheus",
        "prometheus-alertmanager",
        "redis-server",
        "wrk",
    ]


def test_an_unknown_purpose_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(SCRIPT), "bench"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "unknown purpose 'bench'" in result.stderr


def test_make_demo_runs_the_install_before_the_demo() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # Run as a top-level make even under `make test`: no inherited flags, no directory lines.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    steps = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    install = steps.index("scripts/install-system-deps demo")
    assert steps[install + 1 :] == [".venv/bin/alert-router demo"]
