"""alert-router: an Alertmanager webhook receiver that adds cost context, removes
duplicates and routes notifications to Slack and PagerDuty."""

from __future__ import annotations

__version__ = "0.1.0"
