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
    """A duration as the rules file writes it, which `parse_duration` reads back exactly:
    `30s`, `5m`, `1h30m`, `24h`, `2.5s`, `0.25s`. Hours are the largest unit, as in
    `repeat_interval: 24h` (days would hide the hours a reader compares)."""
    if seconds < 0 or seconds != seconds:
        raise ValueError(f"{seconds!r} is not a duration")
    whole = int(seconds)
    fraction = seconds - whole
    if whole == 0:
        return f"{fraction:g}s" if fraction else "0s"
    text = "".join(f"{n}{unit}" for n, unit in _split(whole, days=False))
    if fraction:
        # Seconds with a fraction stand alone at the end: "1m2.5s".
        last = whole % 60
        text = text.removesuffix(f"{last}s") if last else text
        text += f"{last + fraction:g}s"
    return text


def format_elapsed(seconds: float) -> str:
    """How long something lasted, for people: the two largest units, `1d 2h`, `1h 20m`,
    `45s` (a resolved Slack message's "after ...")."""
    parts = _split(max(int(seconds), 0), days=True)[:2]
    return " ".join(f"{n}{unit}" for n, unit in parts) if parts else "0s"


def _split(seconds: int, *, days: bool) -> list[tuple[int, str]]:
    """`seconds` as (count, unit) from the largest unit down, zero counts left out."""
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)) if days else _NO_DAYS
    parts = []
    for unit, size in units:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append((count, unit))
    return parts


_NO_DAYS = (("h", 3600), ("m", 60), ("s", 1))
