"""HTTP rules every notifier shares: how long a vendor asked us to wait."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime


def retry_after_seconds(
    value: str | None, *, clock: Callable[[], float] = time.time
) -> float | None:
    """A `Retry-After` header in seconds from now, or None when absent or unreadable.

    RFC 9110 section 10.2.3: either delay-seconds or an HTTP date. Slack sends seconds;
    PagerDuty and proxies in front of either may send a date. A date in the past, or a
    negative number, means "now" (0.0).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(text).timestamp() - clock()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)
