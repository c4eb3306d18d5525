"""Formatting cost-context numbers for people: `$61.50/h`, `92 %`, `$44,280`."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from receiver.models import ContextValue, Unit


def format_value(value: float, unit: Unit) -> str:
    if math.isnan(value) or math.isinf(value):
        return "n/a"
    if unit is Unit.USD:
        return _usd(value)
    if unit is Unit.USD_PER_HOUR:
        return f"{_usd(value)}/h"
    if unit is Unit.PERCENT:
        return f"{value:.0f} %" if abs(value) >= 10 else f"{value:.1f} %"
    if unit is Unit.RATIO:
        return f"{value * 100:.0f} %"
    if unit is Unit.TIMESTAMP:
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d")
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.2f}"


def _usd(value: float) -> str:
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value >= 1000:
        return f"{sign}${value:,.0f}"
    return f"{sign}${value:,.2f}"


def format_context(item: ContextValue) -> str:
    return format_value(item.value, item.unit)
