"""Prometheus alert rules and the Alertmanager receiver: valid, tested, and consistent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from receiver.config.rules import load_rules
from receiver.routing.routes import matching_routes
from tests.k8s.files import (
    ALERTMANAGER_SNIPPET,
    BASE,
    COST_RULES,
    PLATFORM_METRICS,
    REPO,
    ROUTER_RULES,
    ExportedMetrics,
    Manifests,
    all_rules,
    amtool,
    assert_exported_values,
    promtool,
    rule_groups,
)
from tests.k8s.promql import label_matchers, metric_names

PROMTOOL_TESTS = Path(__file__).parent / "promtool"
ROUTER_RECEIVER = "alert-router"

# The seed's five alerts: name -> (severity, team, the platform metric it watches).
SEED_ALERTS = {
    "BudgetThresholdExceeded": ("critical", "finops", "budget_utilization_percentage"),
    "HighGPUCost": ("warning", "finops", "service_cost_per_hour"),
    "LowGPUUtilization": ("warning", "platform", "DCGM_FI_DEV_GPU_UTIL"),
    "HighCostPerJob": ("warning", "finops", "cost_per_job"),
    "IdleGPU": ("warning", "platform", "DCGM_FI_DEV_GPU_UTIL"),
}
ROUTER_ALERTS = {
    "AlertRouterDown",
    "AlertRouterDeliveriesFailing",
    "AlertRouterDeadLetters",
    "AlertRouterHistoryEventsDropped",
    "AlertRouterQueueBackingUp",
    "AlertRouterConfigReloadFailed",
    "AlertRouterCostContextUnavailable",
    "AlertRouterNoWebhooks",
    "AlertRouterWebhooksRefused",
}


def _prometheus_rule(manifests: Manifests) -> dict[str, Any]:
    return manifests.one("PrometheusRule")


@pytest.mark.parametrize("path", [COST_RULES, ROUTER_RULES], ids=lambda p: p.name)
def test_rules_files_pass_promtool(path: Path) -> None:
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_rule_groups_pass_promtool(manifests: Manifests, tmp_path: Path) -> None:
    extracted = tmp_path / "prometheusrule-groups.yaml"
    extracted.write_text(yaml.safe_dump({"groups": _prometheus_rule(manifests)["spec"]["groups"]}))
    result = promtool("check", "rules", str(extracted))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "unit_test", sorted(PROMTOOL_TESTS.glob("*_test.yaml")), ids=lambda p: p.name
)
def test_rules_fire_when_they_should(unit_test: Path) -> None:
    """promtool unit tests: each alert fires past its threshold and `for`, not before."""
    result = promtool("test", "rules", str(unit_test))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rules_file_has_promtool_tests() -> None:
    tested = {
        (PROMTOOL_TESTS / f).resolve()
        for t in PROMTOOL_TESTS.glob("*_test.yaml")
        for f in yaml.safe_load(t.read_text(encoding="utf-8"))["rule_files"]
    }
    assert {COST_RULES.resolve(), ROUTER_RULES.resolve()} <= tested


def test_prometheus_rule_is_the_same_as_the_rules_files(manifests: Manifests) -> None:
    groups = _prometheus_rule(manifests)["spec"]["groups"]
    assert groups == rule_groups(COST_RULES) + rule_groups(ROUTER_RULES), (
        "k8s/base/prometheusrule.yaml spec.groups must be the groups of "
        "rules/prometheus/cost-alerts.yaml then alert-router.yaml: change them together"
    )


def test_the_five_seed_alerts() -> None:
    rules = {r["alert"]: r for r in all_rules(COST_RULES)}
    assert set(rules) == set(SEED_ALERTS)
    for name, (severity, team, metric) in SEED_ALERTS.items():
        assert rules[name]["labels"] == {"severity": severity, "team": team}, name
        assert metric_names(rules[name]["expr"]) == {metric}, name
    assert rules["LowGPUUtilization"]["for"] == "1h"


def test_router_alerts_cover_its_failure_modes() -> None:
    rules = all_rules(ROUTER_RULES)
    assert {r["alert"] for r in rules} == ROUTER_ALERTS
    for rule in rules:
        assert rule["labels"]["component"] == "alert-router", rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]


@pytest.mark.parametrize("path", [COST_RULES, ROUTER_RULES], ids=lambda p: p.name)
def test_every_alert_is_documented(path: Path) -> None:
    for rule in all_rules(path):
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, rule["alert"]
        assert annotations["runbook_url"].startswith("https://"), rule["alert"]
        assert annotations["runbook_url"].endswith("/" + rule["alert"]), rule["alert"]


def test_seed_alerts_use_only_platform_metrics() -> None:
    for rule in all_rules(COST_RULES):
        unknown = metric_names(rule["expr"]) - PLATFORM_METRICS
        assert not unknown, f"{rule['alert']} uses {unknown}, not a platform metric"


def test_router_alerts_use_only_exported_metrics(exported: ExportedMetrics) -> None:
    for rule in all_rules(ROUTER_RULES):
        # `up` is the series Prometheus itself writes for every scrape.
        unknown = metric_names(rule["expr"]) - exported.names - {"up"}
        assert not unknown, f"{rule['alert']} uses {unknown}, which the app does not export"
        for matcher in label_matchers(rule["expr"]):
            assert_exported_values(exported, matcher)


def test_router_alerts_select_the_scrape_job(manifests: Manifests) -> None:
    (down,) = [r for r in all_rules(ROUTER_RULES) if r["alert"] == "AlertRouterDown"]
    job = manifests.one("Service")["metadata"]["name"]
    assert f'up{{job="{job}"}}' in down["expr"]


def test_seed_alerts_reach_a_named_route() -> None:
    """The labels the rules set are the ones rules/routes.yaml routes on."""
    for path in (REPO / "rules" / "routes.yaml", BASE / "routes.yaml"):
        rules = load_rules(path)
        for rule in all_rules(COST_RULES):
            labels = {"alertname": rule["alert"], **rule["labels"]}
            routes = matching_routes(rules, labels, {})
            assert routes and routes[0].name != "default", f"{rule['alert']} only hits default"


def test_alertmanager_snippet_passes_amtool() -> None:
    result = amtool("check-config", str(ALERTMANAGER_SNIPPET))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("alert", sorted(SEED_ALERTS) + sorted(ROUTER_ALERTS))
def test_alertmanager_routes_cost_alerts_to_the_router(alert: str) -> None:
    (rule,) = [r for r in all_rules(COST_RULES) + all_rules(ROUTER_RULES) if r["alert"] == alert]
    labels = [f"{k}={v}" for k, v in {"alertname": alert, **rule["labels"]}.items()]
    result = amtool("config", "routes", "test", f"--config.file={ALERTMANAGER_SNIPPET}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    receivers = result.stdout.split()
    if alert in SEED_ALERTS:
        assert receivers == [ROUTER_RECEIVER]
    else:
        # The router's own alerts must not depend on the router to be delivered.
        assert ROUTER_RECEIVER not in receivers
