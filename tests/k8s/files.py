"""Readers for the deployment files: manifests, rules, and the metrics the app exports."""

from __future__ import annotations

import importlib
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.k8s.promql import LabelMatcher
from tests.support import IN_CI, require_binary

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
# The kustomize base (`kubectl apply -k k8s/` builds it); overlays in k8s/overlays/.
BASE = K8S / "base"
RULES_DIR = REPO / "rules" / "prometheus"
COST_RULES = RULES_DIR / "cost-alerts.yaml"
ROUTER_RULES = RULES_DIR / "alert-router.yaml"
ALERTMANAGER_SNIPPET = K8S / "alertmanager" / "alertmanager-receiver.yaml"
DASHBOARD = BASE / "dashboards" / "alert-router.json"
SECRET_EXAMPLE = K8S / "secret.example.yaml"

# The GPU platform's metrics (DESIGN.md), which the seed alerts are written against.
PLATFORM_METRICS = frozenset(
    {
        "gpu_cost_per_hour",
        "service_cost_per_hour",
        "service_cost_per_minute",
        "monthly_cost_projection",
        "budget_utilization_percentage",
        "cost_per_job",
        "total_gpu_hours",
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_FB_FREE",
        "redis_queue_depth",
    }
)

# Labels whose values are fixed by the app (receiver/metrics.py), so a query naming a
# value the app never exports is a typo; destination names and status codes vary.
ENUM_LABELS = ("outcome", "reason", "queue")

# Series names each metric type exposes, past the family name.
_TYPE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "unknown": ("",),
}


def require_module(name: str) -> ModuleType:
    """A Python package the test needs: skipped locally when absent, a failure in CI."""
    try:
        return importlib.import_module(name)
    except ImportError:
        message = f"Python package {name} is not installed (pip install -e '.[test]')"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document of a manifest file."""
    docs = yaml.safe_load_all(path.read_text(encoding="utf-8"))
    return [doc for doc in docs if doc]


def kustomization() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(BASE / "kustomization.yaml")
    return data


def generator(name: str) -> dict[str, Any]:
    """A configMapGenerator entry of k8s/kustomization.yaml, by ConfigMap name."""
    for entry in kustomization().get("configMapGenerator", []):
        if entry["name"] == name:
            found: dict[str, Any] = entry
            return found
    raise AssertionError(f"k8s/kustomization.yaml has no configMapGenerator named {name}")


def generator_files(name: str) -> dict[str, Path]:
    """ConfigMap key -> source file, for `files:` written as `path` or `key=path`."""
    files: dict[str, Path] = {}
    for item in generator(name).get("files", []):
        key, _, source = item.rpartition("=")
        path = BASE / source
        files[key or path.name] = path
    return files


@dataclass
class Manifests:
    """The objects kustomization.yaml's resources declare, by (kind, name)."""

    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = self.objects.get((kind, name))
        assert found is not None, f"no {kind} named {name} in k8s/ resources"
        return found

    def one(self, kind: str) -> dict[str, Any]:
        matches = [obj for (k, _), obj in self.objects.items() if k == kind]
        assert len(matches) == 1, f"expected one {kind} in k8s/ resources, found {len(matches)}"
        return matches[0]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.objects.values())


def read_manifests() -> Manifests:
    found = Manifests()
    for resource in kustomization()["resources"]:
        for doc in load_documents(BASE / resource):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in found.objects, f"{key} is declared twice"
            found.objects[key] = doc
    return found


@dataclass(frozen=True)
class ExportedMetrics:
    """Series names the app exposes, and the label values seen on each."""

    names: frozenset[str]
    # Family name -> its series names (a counter `x` has `x_total`, `x_created`).
    families: dict[str, set[str]]
    labels: dict[str, dict[str, set[str]]]


def parse_exposition(text: str) -> ExportedMetrics:
    """Series names and label values from a /metrics exposition."""
    families: dict[str, set[str]] = {}
    labels: dict[str, dict[str, set[str]]] = {}
    for family in text_string_to_metric_families(text):
        series = families.setdefault(family.name, set())
        series.update(family.name + suffix for suffix in _TYPE_SUFFIXES[family.type])
        for sample in family.samples:
            series.add(sample.name)
            seen = labels.setdefault(sample.name, {})
            for label, value in sample.labels.items():
                seen.setdefault(label, set()).add(value)
    names = frozenset(name for series in families.values() for name in series)
    return ExportedMetrics(names, families, labels)


def project() -> dict[str, Any]:
    with (REPO / "pyproject.toml").open("rb") as f:
        data: dict[str, Any] = tomllib.load(f)
    return data


def rule_groups(path: Path) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = load_yaml(path)["groups"]
    return groups


def all_rules(path: Path) -> list[dict[str, Any]]:
    return [rule for group in rule_groups(path) for rule in group["rules"]]


def assert_exported_values(exported: ExportedMetrics, matcher: LabelMatcher) -> None:
    """A matcher on a fixed-value label names only values the app exports."""
    if matcher.label not in ENUM_LABELS or matcher.metric not in exported.labels:
        return
    seen = exported.labels[matcher.metric].get(matcher.label, set())
    for value in matcher.literal_values():
        assert value in seen, (
            f'{matcher.metric}{{{matcher.label}="{value}"}}: the app exports {sorted(seen)}'
        )


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run Debian's promtool (skipped locally when absent, a failure in CI)."""
    binary = require_binary("promtool")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run Debian's amtool (skipped locally when absent, a failure in CI)."""
    binary = require_binary("amtool")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)
