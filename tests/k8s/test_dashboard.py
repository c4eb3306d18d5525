"""The Grafana dashboard: valid JSON and PromQL, on metrics the app really exports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.files import DASHBOARD, ExportedMetrics, assert_exported_values, promtool
from tests.k8s.promql import LabelMatcher, label_matchers, metric_names

# Grafana's interval variables, replaced by a duration before PromQL is checked.
_GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def _panels() -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in _dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def _queries() -> list[str]:
    return [t["expr"] for p in _panels() for t in p.get("targets", [])]


def test_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "alert-router"
    assert dashboard["title"]
    ids = [p["id"] for p in _panels()]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in _panels():
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], f"panel {panel['title']} has no query"
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    (variable,) = dashboard["templating"]["list"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query, as a recording rule, with Grafana's variables filled in."""
    rules = []
    for i, expr in enumerate(_queries()):
        for variable, value in _GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_queried_metric_is_exported(exported: ExportedMetrics) -> None:
    for expr in _queries():
        unknown = metric_names(expr) - exported.names
        assert not unknown, f"{expr!r} queries {unknown}, which the app does not export"
        for matcher in label_matchers(expr):
            assert_exported_values(exported, matcher)


def test_every_exported_metric_is_on_the_dashboard(exported: ExportedMetrics) -> None:
    queried = {name for expr in _queries() for name in metric_names(expr)}
    for family, series in exported.families.items():
        # The client's `_created` timestamps of counters and histograms are bookkeeping,
        # and process or runtime collectors, if any, are not the router's own.
        if family.endswith("_created") and family.removesuffix("_created") in exported.families:
            continue
        if not family.startswith("alert_router_"):
            continue
        assert series & queried, f"no panel shows {family} ({sorted(series)})"


# -- the PromQL reader the checks above rely on ------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        # functions, grouping labels and ranges are not metrics
        ("sum by (le, destination) (rate(a_bucket[5m]))", {"a_bucket"}),
        # both sides of a binary operation, numbers and keywords left out
        ("time() - max(b_seconds) > 3 * 3600 and on() c", {"b_seconds", "c"}),
        # label values and Grafana variables are not metrics
        ('d{outcome=~"x|y"} offset 1h / e[$__rate_interval]', {"d", "e"}),
        ('absent(up{job="alert-router"} == 1)', {"up"}),
        ("histogram_quantile(0.99, sum by (le) (rate(f_bucket[5m])))", {"f_bucket"}),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_label_matchers() -> None:
    found = label_matchers('sum(rate(a_total{outcome=~"retried|dead_letter", job="x"}[5m]))')
    assert found == [
        LabelMatcher("a_total", "outcome", "=~", "retried|dead_letter"),
        LabelMatcher("a_total", "job", "=", "x"),
    ]
    assert found[0].literal_values() == ["retried", "dead_letter"]
    assert LabelMatcher("m", "reason", "=~", "time.*").literal_values() == []
