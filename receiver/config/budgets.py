"""The platform's budgets file, `cost_allocation.json`: read and validated in one place.

The file is the cost-config ConfigMap: `{service: {budget_monthly: 48000, alert_threshold: 80}}`.
`alert-router check` (through the rules loader) and the running service both read it with
`parse_budgets`, so they accept exactly the same files.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard


@dataclass(frozen=True, slots=True)
class Budget:
    """One service's monthly budget. `alert_threshold` is a ratio (0.8), None when unset."""

    service: str
    monthly: float
    alert_threshold: float | None = None


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


def read_budgets(path: Path) -> dict[str, Budget]:
    """`parse_budgets` of the file at `path`; ValueError naming the file if unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read budgets file {path}: {exc.strerror}") from None
    return parse_budgets(text, path)


def _ratio(value: float) -> float:
    return value / 100 if value > 1 else value


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
