"""Monthly budgets as cost context: the budgets file kept fresh, and when each runs out.

The file (read and validated by `receiver.config.budgets`) is re-read when it changes (mtime
or size), so a ConfigMap update needs no restart.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeGuard

from receiver.config.budgets import Budget, parse_budgets
from receiver.models import ContextValue, Unit

log = logging.getLogger("alert_router.context")

# Names of the cost-context values the exhaustion date is computed from (see rules/routes.yaml).
BUDGET_USED = "budget_used"
COST_PER_HOUR = "cost_per_hour"


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
            log.warning(
                "budgets file unusable; keeping the budgets read before",
                extra={"file": str(self.path), "error": problem, "kept": len(self._budgets)},
            )
        self.error = problem


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


def _finite(value: float | None) -> TypeGuard[float]:
    return value is not None and math.isfinite(value)
