"""Budgets: the budget and its exhaustion date on an alert, the budgets file re-read, kept
when broken, validated."""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from receiver.config.budgets import parse_budgets
from receiver.config.rules import Rules
from receiver.context.budgets import Budgets, exhaustion_time
from receiver.context.enrich import Enricher
from receiver.context.units import format_value
from receiver.metrics import Metrics
from receiver.models import CostContext, Unit
from tests.context.seed import (
    BUDGET,
    LOW_GPU,
    enrich_once,
    run,
    shipped_data,
    write_rules,
)
from tests.fakes.prometheus import PrometheusServer


def test_budget_and_its_exhaustion_date(
    seeded: float, prometheus: PrometheusServer, shipped: Rules, tmp_path: Path
) -> None:
    path = tmp_path / "cost_allocation.json"
    path.write_text(
        '{"whisper-pyannote-stt": {"budget_monthly": 48000, "alert_threshold": 80}}',
        encoding="utf-8",
    )
    now = datetime(2026, 11, 15, tzinfo=UTC)
    budget, gpu = run(
        enrich_once(
            shipped,
            [BUDGET, LOW_GPU],
            prometheus.url,
            budgets=Budgets(path),
            wall_clock=lambda: now,
        )
    )
    # 92 % of $48,000 spent: $3,840 left at $61.50/h = 62.44 h from now.
    runs_out = now + timedelta(hours=48000 * 0.08 / 61.5)
    assert budget.get("budget_monthly") == 48000
    assert budget.get("budget_exhausted_on") == pytest.approx(runs_out.timestamp())
    shown = {v.title: format_value(v.value, v.unit) for v in budget.values}
    assert shown["Monthly budget"] == "$48,000"
    assert shown["Budget runs out"] == "2026-11-17"
    assert [v.unit for v in budget.values[-2:]] == [Unit.USD, Unit.TIMESTAMP]
    assert gpu.get("budget_monthly") is None  # no service label


def test_budgets_file_from_the_rules_is_reread_when_it_changes(
    seeded: float, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    path = tmp_path / "cost_allocation.json"
    path.write_text('{"whisper-pyannote-stt": {"budget_monthly": 48000}}', encoding="utf-8")
    data = shipped_data()
    data["budgets"] = {"file": "cost_allocation.json"}
    rules = write_rules(tmp_path, data)

    async def scenario() -> tuple[CostContext, CostContext]:
        async with httpx.AsyncClient() as client:
            enricher = Enricher(client, Metrics(), prometheus_url=prometheus.url)
            [first] = await enricher.enrich(rules, [BUDGET])
            path.write_text('{"whisper-pyannote-stt": {"budget_monthly": 60000}}', encoding="utf-8")
            stat = path.stat()
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
            [second] = await enricher.enrich(rules, [BUDGET])
            return first, second

    first, second = run(scenario())
    assert first.get("budget_monthly") == 48000
    assert second.get("budget_monthly") == 60000


def test_a_broken_budgets_file_keeps_the_last_good_one(tmp_path: Path) -> None:
    path = tmp_path / "cost_allocation.json"
    path.write_text('{"a": {"budget_monthly": 100, "alert_threshold": 0.8}}', encoding="utf-8")
    budgets = Budgets(path)
    path.write_text("{not json", encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    budgets.refresh()
    assert budgets.get("a") is not None
    assert budgets.error is not None and "is not JSON" in budgets.error


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # alert_threshold: percent or ratio, kept as a ratio.
        ('{"a": {"budget_monthly": 100, "alert_threshold": 80}}', 0.8),
        ('{"a": {"budget_monthly": 100, "alert_threshold": 0.9}}', 0.9),
        ('{"a": {"budget_monthly": 100}}', None),
    ],
)
def test_alert_threshold_is_a_ratio(text: str, expected: float | None) -> None:
    assert parse_budgets(text, Path("b.json"))["a"].alert_threshold == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[]", "must map service names"),
        ('{"a": {"budget_monthly": "lots"}}', "'a' needs a numeric budget_monthly"),
        (
            '{"a": {"budget_monthly": 1, "alert_threshold": "x"}}',
            "alert_threshold must be a number",
        ),
    ],
)
def test_invalid_budgets_are_named(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_budgets(text, Path("b.json"))


MID_NOVEMBER = datetime(2026, 11, 16, tzinfo=UTC)  # 360 hours into the month


@pytest.mark.parametrize(
    ("used", "rate", "expected"),
    [
        # used % and $/hour: the remaining $400 at $10/h.
        (60.0, 10.0, MID_NOVEMBER + timedelta(hours=40)),
        # used % only: the month's average rate, $600 in 360 h.
        (60.0, None, MID_NOVEMBER + timedelta(hours=400 / (600 / 360))),
        # $/hour only: as if that rate held all month ($3,600 spent; $1,000 budget gone).
        (None, 10.0, MID_NOVEMBER),
        (None, 1.0, MID_NOVEMBER + timedelta(hours=1000 - 360)),
        # Already over budget: today.
        (120.0, 10.0, MID_NOVEMBER),
        # No burn rate: no date.
        (None, None, None),
        (0.0, None, None),
        (50.0, math.nan, MID_NOVEMBER + timedelta(hours=500 / (500 / 360))),
    ],
)
def test_exhaustion_time(used: float | None, rate: float | None, expected: datetime | None) -> None:
    got = exhaustion_time(1000, MID_NOVEMBER, used_percent=used, cost_per_hour=rate)
    if expected is None:
        assert got is None
    else:
        assert got is not None
        assert got.timestamp() == pytest.approx(expected.timestamp())
