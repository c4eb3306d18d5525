"""Prometheus-style durations: `30s`, `5m`, `4h`, `1d`, `1h30m`."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(text: str) -> float:
    """Seconds in a duration string; ValueError with the accepted form otherwise."""
    cleaned = text.strip()
    pos = 0
    total = 0.0
    for found in _PART.finditer(cleaned):
        if found.start() != pos:
            break
        total += float(found.group(1)) * _UNITS[found.group(2)]
        pos = found.end()
    if not cleaned or pos != len(cleaned):
        raise ValueError(f"{text!r} is not a duration: use e.g. 30s, 5m, 4h, 1d or 1h30m")
    return total


def format_duration(seconds: float) -> str:
    if seconds and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"
