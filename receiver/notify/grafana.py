"""What Grafana Alerting's webhook adds, as the notifiers show it (Slack and PagerDuty alike).

The query values that fired the alert (`values`, by refId) are numbers for people: no
15-digit floats. The links Grafana gives (dashboard, panel, silence) go through here so
that both notifiers label them alike. Text and URLs are only chosen here; each notifier
escapes and checks them by its vendor's rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from receiver.models import Alert

# Significant digits of a query value: Grafana computes in float64, and 61.50000000000001
# is 61.5 to a reader.
_DIGITS = 6
# Past these magnitudes a plain decimal is hard to read (or very long): scientific notation.
_LARGE = 1e15
_SMALL = 1e-3


def format_query_value(value: float) -> str:
    """A query value for people: `61.5`, `0.3`, `1,234,568`, `2.5e-05`, `NaN`, `+Inf`."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"  # Prometheus's spelling, as Grafana shows it
    if value == 0:
        return "0"
    magnitude = abs(value)
    if not _SMALL <= magnitude < _LARGE:
        return f"{value:.{_DIGITS - 2}g}"
    decimals = max(0, _DIGITS - 1 - math.floor(math.log10(magnitude)))
    text = f"{value:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def query_values(alert: Alert) -> list[tuple[str, str]]:
    """(refId, formatted value) in refId order; empty for an Alertmanager alert."""
    if alert.grafana is None:
        return []
    values: Mapping[str, float] = alert.grafana.values
    return [(ref, format_query_value(values[ref])) for ref in sorted(values)]


def query_numbers(alert: Alert) -> dict[str, float | None]:
    """The query values as JSON numbers; NaN and infinities (not JSON) become None."""
    if alert.grafana is None:
        return {}
    values = alert.grafana.values
    return {ref: v if math.isfinite(v) else None for ref, v in sorted(values.items())}


def grafana_links(alert: Alert) -> list[tuple[str, str]]:
    """(label, raw URL) of the dashboard and the panel, when Grafana gave them."""
    if alert.grafana is None:
        return []
    found = [("Dashboard", alert.grafana.dashboard_url), ("Panel", alert.grafana.panel_url)]
    return [(label, url) for label, url in found if url]


def silence_url(alert: Alert) -> str | None:
    """Grafana's own new-silence page for a Grafana alert (its `silenceURL`), else None:
    an Alertmanager alert is silenced in Alertmanager."""
    if alert.grafana is None or not alert.grafana.silence_url:
        return None
    return alert.grafana.silence_url
