"""Grafana Alerting's webhook (payload version "1"): how it is recognised, and the fields it
adds to each alert.

Grafana's webhook contact point sends Alertmanager's envelope and alerts (its notifier is
built on Alertmanager's) plus fields of its own. The names are those of Grafana's
`webhookMessage` and `ExtendedAlert` (grafana/alerting: receivers/webhook/v1/webhook.go,
templates/template_data.go) and of the payload in Grafana's "Configure webhook
notifications" page:

- top level: `version` "1", `orgId`, `title`, `state` ("alerting" or "ok"), `message`,
  `truncatedAlerts`;
- per alert: `values` (refId -> number), `valueString`, `silenceURL`, `dashboardURL`,
  `panelURL`, `imageURL` (left out when there is no image).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from receiver.models import GrafanaFields

# Grafana Alerting's webhook payload version (Alertmanager's is "4").
GRAFANA_VERSION = "1"
# What a version-1 body must carry besides `alerts` to be Grafana's: its notifier always
# writes these three (none of them is `omitempty`).
GRAFANA_KEYS = ("orgId", "state", "title")


def missing_grafana_keys(payload: Mapping[str, Any]) -> list[str]:
    """The keys of Grafana's envelope that a version-1 body lacks (none: it is Grafana's)."""
    return [key for key in GRAFANA_KEYS if key not in payload]


def grafana_fields(raw: Mapping[str, Any], envelope: Mapping[str, Any]) -> GrafanaFields:
    """What Grafana adds to one alert of its webhook. A field of the wrong type is left
    empty, and a query value that is not a number (null, a string) is dropped: the alert
    itself is still good."""
    return GrafanaFields(
        values=query_values(raw.get("values")),
        value_string=_text(raw.get("valueString")),
        dashboard_url=_text(raw.get("dashboardURL")),
        panel_url=_text(raw.get("panelURL")),
        silence_url=_text(raw.get("silenceURL")),
        image_url=_text(raw.get("imageURL")),
        org_id=_org(envelope.get("orgId")),
    )


def query_values(values: Any) -> dict[str, float]:
    """`values` of a Grafana alert: refId -> number, the numbers only."""
    if not isinstance(values, dict):
        return {}
    numbers: dict[str, float] = {}
    for ref, value in values.items():
        # bool is an int in Python; `true` is not a query value.
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        try:
            number = float(value)
        except OverflowError:  # an integer past what a float holds
            continue
        if math.isfinite(number):
            numbers[str(ref)] = number
    return numbers


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _org(value: Any) -> int | None:
    return value if type(value) is int else None
