"""Each section against a real Prometheus holding known history (backfilled with promtool),
with the expected figures worked out by hand below."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from receiver.config.reports import ReportSpec
from receiver.config.rules import Rules, load_rules
from receiver.context.prometheus import PrometheusClient
from receiver.metrics import Metrics
from receiver.reports.model import Incident, Report
from receiver.reports.sections import build_report
from tests.fakes.prometheus import PrometheusServer, Sample, start_backfilled


def _now() -> datetime:
    """09:00 UTC on the 10th of last month (whole hours: every range query's steps land on
    the changes below): 9 days and 8 hours, 224 h, into its month."""
    first = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    last_month = (first - timedelta(days=1)).replace(day=1)
    return last_month.replace(day=10, hour=8)


NOW = _now()
T = NOW.timestamp()
DAY = 86400
CHANGE = T - DAY  # services b and c change rate here, exactly 24 h before the report
SERVICE = "service_cost_per_hour"


def _history() -> list[Sample]:
    samples: list[Sample] = []
    for t in range(int(T - 10 * DAY), int(T) + 1, 60):
        samples.append((SERVICE, {"service": "a", "namespace": "ai"}, t, 10.0))
        samples.append(
            (SERVICE, {"service": "b", "namespace": "ai"}, t, 4.0 if t < CHANGE else 8.0)
        )
        samples.append(
            (SERVICE, {"service": "c", "namespace": "ai"}, t, 6.0 if t < CHANGE else 3.0)
        )
    for t in range(int(T - DAY - 3600), int(T) + 1, 60):
        samples.append(
            (
                "gpu_cost_per_hour",
                {"node": "gpu-node-2", "instance_type": "g4dn.12xlarge", "gpu_type": "T4"},
                t,
                12.24,
            )
        )
        samples.append(
            (
                "gpu_cost_per_hour",
                {"node": "gpu-node-3", "instance_type": "g5.12xlarge", "gpu_type": "A10G"},
                t,
                8.0,
            )
        )
        for gpu, util in enumerate([12, 80, 9, 21]):
            labels = {"Hostname": "gpu-node-2", "gpu": str(gpu)}
            samples.append(("DCGM_FI_DEV_GPU_UTIL", labels, t, float(util)))
        for gpu, util in enumerate([55, 0]):
            labels = {
                "Hostname": "gpu-node-3",
                "gpu": str(gpu),
                "pod": f"whisper-pyannote-stt-{gpu}",
            }
            samples.append(("DCGM_FI_DEV_GPU_UTIL", labels, t, float(util)))
        samples.append(("budget_utilization_percentage", {"service": "a"}, t, 32.0))
        samples.append(("budget_utilization_percentage", {"service": "b"}, t, 33.0))
        samples.append(("monthly_cost_projection", {"service": "a"}, t, 7440.0))
        samples.append(("monthly_cost_projection", {"service": "b"}, t, 2500.0))
    return samples


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    # Module scope: promtool writes the blocks once for all the section tests.
    server = start_backfilled(tmp_path_factory.mktemp("history"), _history())
    yield server
    server.close()


def _rules(directory: Path, url: str) -> Rules:
    budgets = directory / "cost_allocation.json"
    budgets.write_text('{"a": {"budget_monthly": 7000}, "b": {"budget_monthly": 3000}}')
    data = {
        "prometheus": {"url": url, "timeout": "10s"},
        "destinations": {
            "finops-slack": {"slack": {"webhook_url": {"secret": "slack-webhook-url"}}}
        },
        "budgets": {"file": str(budgets)},
    }
    path = directory / "routes.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_rules(path)


INCIDENTS = (
    Incident("HighServiceCost", "a", NOW - timedelta(hours=5), NOW - timedelta(hours=3), 20.0),
    Incident("IdleGPU", None, NOW - timedelta(hours=1), None, None),
    Incident("HighServiceCost", "b", NOW - timedelta(hours=2), NOW - timedelta(hours=1), 55.5),
    # Before the window: not in this report.
    Incident("HighServiceCost", "c", NOW - timedelta(days=3), NOW - timedelta(days=2), 99.0),
)


@pytest.fixture(scope="module")
def report(history: PrometheusServer, tmp_path_factory: pytest.TempPathFactory) -> Report:
    rules = _rules(tmp_path_factory.mktemp("rules"), history.url)
    spec = ReportSpec.model_validate(
        {"to": ["finops-slack"], "schedule": "0 9 * * *", "window": "24h"}
    )

    async def build() -> Report:
        async with httpx.AsyncClient() as client:
            prometheus = PrometheusClient(client, Metrics())
            return await build_report("daily-costs", spec, rules, prometheus, NOW, INCIDENTS)

    return asyncio.run(build())


def test_every_section_is_computed(report: Report) -> None:
    assert report.unavailable == ()
    assert report.start == NOW - timedelta(hours=24) and report.end == NOW


def test_spend_integrates_each_service_over_the_window_and_the_month(report: Report) -> None:
    spend = report.spend
    assert spend is not None
    rows = {r.service: (r.window, r.month) for r in spend.rows}
    # Window, 24 h at the rate since the change: a 10 x 24, b 8 x 24, c 3 x 24.
    # Month, 224 h sampled hourly: a 10 x 224 = 2240; b 4 x 199 h + the hour of the change
    # at the mean of 4 and 8 (samples are joined linearly) + 8 x 24 = 796 + 6 + 192 = 994;
    # c 6 x 199 + 4.5 + 3 x 24 = 1270.5.
    assert rows["a"] == pytest.approx((240, 2240))
    assert rows["b"] == pytest.approx((192, 994))
    assert rows["c"] == pytest.approx((72, 1270.5))
    assert [r.service for r in spend.rows] == ["a", "b", "c"]
    assert spend.window_total == pytest.approx(240 + 192 + 72)
    assert spend.month_total == pytest.approx(2240 + 994 + 1270.5)


def test_changes_compare_the_rate_now_with_the_7_day_average(report: Report) -> None:
    changes = report.changes
    assert changes is not None
    # 168 h sampled hourly: b (4 x 143 + 6 + 8 x 24) / 168 = 770 / 168; c 934.5 / 168.
    # a has not changed: in neither list.
    assert [(c.service, c.now) for c in changes.rises] == [("b", 8.0)]
    assert changes.rises[0].average == pytest.approx(770 / 168)
    assert [(c.service, c.now) for c in changes.falls] == [("c", 3.0)]
    assert changes.falls[0].average == pytest.approx(934.5 / 168)


def test_waste_counts_idle_and_underused_gpus(report: Report) -> None:
    waste = report.waste
    assert waste is not None
    # gpu-node-2: $12.24/h over 4 GPUs = $3.06/h each; at 12, 9 and 21 % the unused part
    # for 24 h: 3.06 x (0.88 + 0.91 + 0.79) x 24 = 189.4752. The GPU at 80 % wastes nothing.
    # gpu-node-3: $8/h over 2 GPUs; GPU 1 idle all day: 4 x 24 = 96.
    assert waste.low_total == pytest.approx(189.4752)
    assert waste.idle_total == pytest.approx(96)
    assert [name for name, _ in waste.by_node] == ["gpu-node-2", "gpu-node-3"]
    assert [value for _, value in waste.by_node] == pytest.approx([189.4752, 96])
    # node-3's GPUs run pods of whisper-pyannote-stt; node-2's run none.
    assert dict(waste.by_service) == {
        "(no service)": pytest.approx(189.4752),
        "whisper-pyannote-stt": pytest.approx(96),
    }


def test_waste_recommends_what_applies_with_its_saving(report: Report) -> None:
    waste = report.waste
    assert waste is not None
    found = [(r.kind, r.node) for r in waste.recommendations]
    # node-2: three GPUs under 30 % (12 + 9 + 21 = 42 %) fit on one: 2 freed x $3.06 x 24 h.
    # node-3: mean 27.5 %, and a T4 costs $3.06/h per GPU against $4: (4 - 3.06) x 2 x 24.
    assert found == [("time_slicing", "gpu-node-2"), ("smaller_gpu", "gpu-node-3")]
    assert [r.saves for r in waste.recommendations] == pytest.approx([146.88, 45.12])


def test_budgets_show_use_projection_and_run_out_date(report: Report) -> None:
    budgets = report.budgets
    assert budgets is not None
    rows = {r.service: r for r in budgets}
    assert [r.service for r in budgets] == ["b", "a"]  # most used first
    a = rows["a"]
    assert (a.used_percent, a.projected, a.budget, a.over) == (32.0, 7440.0, 7000.0, True)
    # a: 32 % of 7000 spent = 2240; (7000 - 2240) / $10/h = 476 h left.
    assert a.runs_out == NOW + timedelta(hours=476)
    b = rows["b"]
    assert (b.used_percent, b.projected, b.budget, b.over) == (33.0, 2500.0, 3000.0, False)
    # b: 990 spent; (3000 - 990) / $8/h = 251.25 h.
    assert b.runs_out == NOW + timedelta(hours=251.25)


def test_incidents_are_those_of_the_window_costliest_first(report: Report) -> None:
    assert report.incidents is not None
    assert [(i.alertname, i.service, i.cost) for i in report.incidents] == [
        ("HighServiceCost", "b", 55.5),
        ("HighServiceCost", "a", 20.0),
        ("IdleGPU", None, None),
    ]


def test_chart_lines_carry_the_budget_rate(report: Report) -> None:
    lines = {line.service: line for line in report.lines}
    first = NOW.replace(day=1, hour=0)
    hours = ((first + timedelta(days=32)).replace(day=1) - first).total_seconds() / 3600
    assert lines["a"].budget_rate == pytest.approx(7000 / hours)
    assert lines["c"].budget_rate is None
    assert {v for _, v in lines["b"].points} == {8.0}


def test_a_failed_query_names_its_section_and_keeps_the_others(
    history: PrometheusServer, tmp_path: Path
) -> None:
    rules = _rules(tmp_path, history.url)
    spec = ReportSpec.model_validate(
        {
            "to": ["finops-slack"],
            "schedule": "0 9 * * *",
            "sections": ["spend", "waste"],
            "queries": {"gpu_cost": "sum by (node) ("},
        }
    )

    async def build() -> Report:
        async with httpx.AsyncClient() as client:
            return await build_report("r", spec, rules, PrometheusClient(client, Metrics()), NOW)

    report = asyncio.run(build())
    assert report.spend is not None and report.waste is None
    assert [name for name, _ in report.unavailable] == ["waste"]
    assert "bad_data" in report.unavailable[0][1]
