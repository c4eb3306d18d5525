"""The Prometheus client's failures as reasons: error envelopes, an unusable URL; and the
Prometheus fixtures themselves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import yaml

from receiver.metrics import Metrics
from tests.context.seed import (
    HIGH_GPU_COST,
    custom_rules,
    enrich_once,
    queries,
    run,
    unavailable,
)
from tests.fakes.prometheus import PrometheusServer


def test_error_envelopes_become_query_error_reasons(
    seeded: float, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    rules = custom_rules(
        tmp_path,
        {
            "good": {"query": "sum by (service) (service_cost_per_hour)", "unit": "usd_per_hour"},
            # bad_data (HTTP 400): a parse error.
            "broken": {"query": "sum by (service) (service_cost_per_hour", "unit": "usd_per_hour"},
            # execution (HTTP 422): many-to-many matching.
            "ambiguous": {
                "query": "service_cost_per_hour * on () group_left service_cost_per_hour",
                "unit": "usd_per_hour",
            },
        },
    )
    metrics = Metrics()
    [context] = run(enrich_once(rules, [HIGH_GPU_COST], prometheus.url, metrics))
    assert context.numbers() == {"good": 61.5}
    reasons = dict(context.unavailable)
    assert reasons["broken"].startswith("query error: bad_data: ")
    assert "unclosed left parenthesis" in reasons["broken"]
    assert reasons["ambiguous"].startswith("query error: execution: ")
    assert unavailable(metrics, "query_error") == 2
    assert queries(metrics, "failure") == 2


def test_unusable_prometheus_url_is_unreachable_not_an_exception(tmp_path: Path) -> None:
    rules = custom_rules(tmp_path, {"cost": {"query": "up", "unit": "count"}})
    [context] = run(enrich_once(rules, [HIGH_GPU_COST], "ftp://nowhere"))
    assert context.unavailable == (("cost", "Prometheus unreachable"),)


def test_prometheus_factory_starts_another_prometheus_with_rule_files(
    prometheus_factory: Callable[..., PrometheusServer], tmp_path: Path
) -> None:
    rule_file = tmp_path / "cost.rules.yaml"
    rule_file.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "cost",
                        "rules": [
                            {
                                "record": "service:cost_per_hour:sum",
                                "expr": "sum by (service) (service_cost_per_hour)",
                            }
                        ],
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    server = prometheus_factory([rule_file], wait_for_scrape=False)
    rules = httpx.get(f"{server.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert [r["name"] for g in rules for r in g["rules"]] == ["service:cost_per_hour:sum"]
    server.stop()
    assert not server.running
