"""Fixtures for the deployment-file tests, read once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import httpx
import pytest

from tests.k8s.files import (
    REPO,
    SECRET_EXAMPLE,
    ExportedMetrics,
    Manifests,
    generator_files,
    load_documents,
    parse_exposition,
    read_manifests,
)
from tests.support import free_port, terminate, wait_until


@pytest.fixture(scope="session")
def manifests() -> Manifests:
    return read_manifests()


@dataclass(frozen=True)
class LiveRouter:
    """`alert-router serve` running with the Deployment's settings, files and Secret."""

    url: str
    process: subprocess.Popen[str]
    log: Path


def _serve_env(manifests: Manifests, root: Path, port: int) -> dict[str, str]:
    """The Deployment's environment, with its mounts moved under `root`."""
    (container,) = manifests.get("Deployment", "alert-router")["spec"]["template"]["spec"][
        "containers"
    ]
    deployed = {e["name"]: e["value"] for e in container["env"]}
    rules = root / "rules"
    rules.mkdir()
    for key, source in generator_files("alert-router-rules").items():
        (rules / key).write_bytes(source.read_bytes())
    secrets = root / "alert-secrets"
    secrets.mkdir()
    (secret,) = load_documents(SECRET_EXAMPLE)
    for key, value in secret["stringData"].items():
        (secrets / key).write_text(value, encoding="utf-8")
    state = root / "state"
    state.mkdir()
    keep = {k: v for k, v in os.environ.items() if not k.startswith("ALERT_ROUTER_")}
    return {
        **keep,
        **deployed,
        "ALERT_ROUTER_CONFIG": str(rules / PurePosixPath(deployed["ALERT_ROUTER_CONFIG"]).name),
        "ALERT_ROUTER_STATE": str(state / PurePosixPath(deployed["ALERT_ROUTER_STATE"]).name),
        "ALERT_ROUTER_SECRETS_DIR": str(secrets),
        "ALERT_ROUTER_HOST": "127.0.0.1",
        "ALERT_ROUTER_PORT": str(port),
        # The package from this checkout, installed or not; the working directory is `root`.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        # Nothing listens there: cost context is optional, serving must not depend on it.
        "PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
    }


@pytest.fixture(scope="session")
def live_router(
    manifests: Manifests, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveRouter]:
    """The container's command (`alert-router serve`) as the Deployment configures it."""
    root = tmp_path_factory.mktemp("deployed")
    port = free_port()
    env = _serve_env(manifests, root, port)
    log = root / "serve.log"
    with log.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "receiver", "serve"],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    router = LiveRouter(f"http://127.0.0.1:{port}", process, log)

    def answering() -> bool:
        if process.poll() is not None:
            pytest.fail(f"alert-router serve exited:\n{log.read_text(encoding='utf-8')}")
        try:
            return httpx.get(f"{router.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(answering, timeout=30)
        yield router
    finally:
        terminate(process)


@pytest.fixture(scope="session")
def exported(live_router: LiveRouter) -> ExportedMetrics:
    """What the running router exports on /metrics."""
    response = httpx.get(f"{live_router.url}/metrics", timeout=5)
    assert response.status_code == 200
    return parse_exposition(response.text)
