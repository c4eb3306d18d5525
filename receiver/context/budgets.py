"""Monthly budgets from the platform's `cost_allocation.json`, and when they run out.

The file is the cost-config ConfigMap: `{service: {budget_monthly: 48000, alert_threshold: 80}}`.
It is re-read when it changes (mtime or size), so a ConfigMap update needs no restart.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeGuard

from receiver.models import ContextValue, Unit

log = logging.getLogger(__name__)

# Names of the cost-context values the exhaustion date is computed from (see rules/routes.yaml).
BUDGET_USED = "budget_used"
COST_PER_HOUR = "cost_per_hour"


@dataclass(frozen=True, slots=True)
class Budget:
    """One service's monthly budget. `alert_threshold` is a ratio (0.8), None when unset."""

    service: str
    monthly: float
    alert_threshold: float | None = None


class Budgets:
    """The budgets file, re-read when it changes. A bad new file keeps the last good one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.error: str | None = None
        self._budgets: dict[str, Budget] = {}
        self._stamp: tuple[int, int] | None = None
        self.refresh()

    def refresh(self) -> None:
        """Re-read the file if its mtime or size changed since the last read."""
        try:
            stat = os.stat(self.path)
        except OSError as exc:
            self._fail(f"cannot read budgets file {self.path}: {exc.strerror}")
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            budgets = parse_budgets(self.path.read_text(encoding="utf-8"), self.path)
        except OSError as exc:
            self._fail(f"cannot read budgets file {self.path}: {exc.strerror}")
            return
        except ValueError as exc:
            self._fail(str(exc))
            return
        self._budgets = budgets
        self.error = None

    def get(self, service: str) -> Budget | None:
        return self._budgets.get(service)

    def __len__(self) -> int:
        return len(self._budgets)

    def _fail(self, problem: str) -> None:
        if problem != self.error:
            kept = (
                f"; keeping the {len(self._budgets)} budgets read before" if self._budgets else ""
            )
            log.warning("%s%s", problem, kept)
        self.error = problem


def parse_budgets(text: str, path: Path) -> dict[str, Budget]:
    """Budgets by service; ValueError naming the file and the entry that is wrong."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"budgets file {path} is not JSON: {exc.msg} at line {exc.lineno}"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"budgets file {path} must map service names to {{budget_monthly: ...}}")
    budgets: dict[str, Budget] = {}
    for service, entry in data.items():
        monthly = entry.get("budget_monthly") if isinstance(entry, dict) else None
        if not _is_number(monthly):
            raise ValueError(f"budgets file {path}: {service!r} needs a numeric budget_monthly")
        threshold = entry.get("alert_threshold")
        if threshold is not None and not _is_number(threshold):
            raise ValueError(f"budgets file {path}: {service!r}: alert_threshold must be a number")
        budgets[service] = Budget(
            service=service,
            monthly=float(monthly),
            # The platform writes 80 (percent) or 0.8 (ratio); keep a ratio.
            alert_threshold=None if threshold is None else _ratio(float(threshold)),
        )
    return budgets


def exhaustion_time(
    budget_monthly: float,
    now: datetime,
    *,
    used_percent: float | None = None,
    cost_per_hour: float | None = None,
) -> datetime | None:
    """When the monthly budget runs out at the current burn rate, or None if unknown.

    hours_so_far = hours since the start of the month (UTC)
    spent        = budget_monthly * used_percent / 100        (if budget_used is known)
                 = cost_per_hour * hours_so_far               (otherwise: the rate held all month)
    rate         = cost_per_hour                              (if known and > 0)
                 = spent / hours_so_far                       (otherwise: the month's average)
    exhausted at = now + (budget_monthly - spent) / rate hours, or now if spent >= budget.

    The date may lie after the end of the month: the budget then lasts the month.
    """
    now = now.astimezone(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    hours_so_far = (now - month_start).total_seconds() / 3600
    rate = cost_per_hour if _finite(cost_per_hour) and cost_per_hour > 0 else None
    if _finite(used_percent):
        spent = budget_monthly * used_percent / 100
    elif rate is not None:
        spent = rate * hours_so_far
    else:
        return None
    if spent >= budget_monthly:
        return now
    if rate is None:
        if spent <= 0 or hours_so_far <= 0:
            return None
        rate = spent / hours_so_far
    hours_left = (budget_monthly - spent) / rate
    # Beyond ~100 years is "never" for a monthly budget (and overflows datetime).
    if hours_left > 24 * 366 * 100:
        return None
    return now + timedelta(hours=hours_left)


def budget_values(
    budget: Budget, context: Mapping[str, float], now: datetime
) -> list[ContextValue]:
    """`budget_monthly` and, when the burn rate is known, `budget_exhausted_on`."""
    values = [ContextValue("budget_monthly", "Monthly budget", budget.monthly, Unit.USD)]
    when = exhaustion_time(
        budget.monthly,
        now,
        used_percent=context.get(BUDGET_USED),
        cost_per_hour=context.get(COST_PER_HOUR),
    )
    if when is not None:
        values.append(
            ContextValue("budget_exhausted_on", "Budget runs out", when.timestamp(), Unit.TIMESTAMP)
        )
    return values


def _ratio(value: float) -> float:
    return value / 100 if value > 1 else value


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _finite(value: float | None) -> TypeGuard[float]:
    return value is not None and math.isfinite(value)
