"""Builds the notifier of each destination in the rules, explicitly, one line per type."""

from __future__ import annotations

import logging

from receiver.config.rules import Rules
from receiver.config.schema import DestinationSpec
from receiver.config.secrets import SecretStore
from receiver.config.settings import Settings
from receiver.context.prometheus import PrometheusClient
from receiver.notify.base import Notifier
from receiver.notify.dryrun import DryRunNotifier, Emit, log_emit
from receiver.notify.pagerduty.notifier import PagerDutyNotifier
from receiver.notify.slack.alert_chart import ChartSource
from receiver.notify.slack.bot import SlackBotNotifier
from receiver.notify.slack.buttons import slack_buttons
from receiver.notify.slack.webhook import SlackWebhookNotifier

log = logging.getLogger("alert_router.notify")


def build_notifier(
    name: str,
    spec: DestinationSpec,
    secrets: SecretStore,
    settings: Settings,
    rules: Rules | None = None,
    *,
    prometheus: PrometheusClient | None = None,
) -> Notifier:
    """The notifier of destination `name`; `rules` (the whole file) gives a bot
    destination its buttons, which depend on the other destinations, and with
    `prometheus` the cost charts of its alerts (`charts: true`)."""
    if spec.slack is not None and spec.slack.webhook_url is not None:
        return SlackWebhookNotifier(name, secrets.source(spec.slack.webhook_url.secret))
    if spec.slack is not None and spec.slack.token is not None:
        assert spec.slack.channel is not None  # rules validation guarantees it
        return SlackBotNotifier(
            name,
            secrets.source(spec.slack.token.secret),
            spec.slack.channel,
            api_url=settings.slack_api_url,
            buttons=slack_buttons(rules, name) if rules is not None else None,
            charts=_charts(name, spec, settings, rules, prometheus),
        )
    assert spec.pagerduty is not None
    return PagerDutyNotifier(
        name,
        secrets.source(spec.pagerduty.routing_key.secret),
        events_url=settings.pagerduty_events_url,
        default_severity=spec.pagerduty.default_severity,
    )


def build_notifiers(
    rules: Rules,
    secrets: SecretStore,
    settings: Settings,
    *,
    dry_run: bool = False,
    emit: Emit = log_emit,
    prometheus: PrometheusClient | None = None,
) -> dict[str, Notifier]:
    """Every destination's notifier; `prometheus` (the service's client) draws the alert
    charts of bot destinations with `charts: true`."""
    notifiers: dict[str, Notifier] = {}
    for name, spec in rules.destinations.items():
        notifier = build_notifier(name, spec, secrets, settings, rules, prometheus=prometheus)
        notifiers[name] = DryRunNotifier(name, notifier, emit) if dry_run else notifier
    return notifiers


def _charts(
    name: str,
    spec: DestinationSpec,
    settings: Settings,
    rules: Rules | None,
    prometheus: PrometheusClient | None,
) -> ChartSource | None:
    if spec.slack is None or not spec.slack.charts or rules is None:
        return None
    if prometheus is None:
        log.warning(
            "charts: true, but this notifier was built without Prometheus: no alert charts",
            extra={"destination": name},
        )
        return None
    return ChartSource(prometheus, rules, prometheus_url=settings.prometheus_url)
