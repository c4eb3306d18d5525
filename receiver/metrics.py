"""The router's own metrics, on a registry passed in (never the global one)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from receiver.models import SOURCES, ContextFailure, DedupReason

# Outcomes of one delivery attempt to a destination.
DELIVERY_OUTCOMES = ("delivered", "retried", "dead_letter")
REJECT_REASONS = ("invalid_alert",)
# The `source` of an ingest series: who sent the webhook (receiver.models.SOURCES), as its
# body says. A webhook refused before its body is read has said nothing yet: "unknown".
UNKNOWN_SOURCE = "unknown"
WEBHOOK_SOURCES = (*SOURCES, UNKNOWN_SOURCE)
# Webhooks refused whole, by the 4xx answered: 401, 415, 413, 400 (body) and 400 (no alert
# valid). Alertmanager never retries a 4xx, so every refusal is a notification lost.
WEBHOOK_REFUSALS = (
    "unauthorized",
    "wrong_content_type",
    "too_large",
    "invalid_body",
    "no_valid_alert",
)

# Slack button presses (receiver.slack_actions): what was asked, and how it ended. Requests that
# name no action we can trust (bad signature, malformed payload) count as action "unknown".
SLACK_ACTIONS = ("silence", "acknowledge")
SLACK_ACTION_OUTCOMES = ("success", "already_done", "failure")
SLACK_REQUEST_REJECTIONS = ("unauthorized", "malformed")


class Metrics:
    """Every metric alert-router exports, named `alert_router_<noun>_<unit>`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.webhooks = Counter(
            "alert_router_webhooks_total",
            "Webhook requests received on /alerts, by HTTP status code answered and source.",
            ["code", "source"],
            registry=r,
        )
        self.webhooks_refused = Counter(
            "alert_router_webhooks_refused_total",
            "Webhooks on /alerts refused whole with a 4xx, which Alertmanager never retries, "
            "by reason and source.",
            ["reason", "source"],
            registry=r,
        )
        self.alerts_received = Counter(
            "alert_router_alerts_received_total",
            "Alerts in accepted webhooks, by what ingest did with them and source.",
            ["outcome", "source"],
            registry=r,
        )
        self.alerts_rejected = Counter(
            "alert_router_alerts_rejected_total",
            "Alerts rejected at ingest, by reason and source.",
            ["reason", "source"],
            registry=r,
        )
        self.last_webhook = Gauge(
            "alert_router_last_webhook_timestamp_seconds",
            "Unix time of the last webhook accepted on /alerts.",
            registry=r,
        )
        self.queue_depth = Gauge(
            "alert_router_queue_depth",
            "Work waiting: alerts to route (inbox) and notifications to deliver (outbox).",
            ["queue"],
            registry=r,
        )
        self.dedup = Counter(
            "alert_router_dedup_decisions_total",
            "Dedup decisions per destination and named reason.",
            ["destination", "reason"],
            registry=r,
        )
        self.notifications = Counter(
            "alert_router_notifications_total",
            "Delivery attempts per destination and outcome (delivered, retried, dead_letter).",
            ["destination", "outcome"],
            registry=r,
        )
        self.retries = Counter(
            "alert_router_delivery_retries_total",
            "Deliveries scheduled for another try, per destination.",
            ["destination"],
            registry=r,
        )
        self.delivery_latency = Histogram(
            "alert_router_delivery_latency_seconds",
            "Time from an alert's acceptance to its delivery, per destination.",
            ["destination"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
            registry=r,
        )
        self.history_dropped = Counter(
            "alert_router_history_events_dropped_total",
            "History events dropped: the store failed for long and the recorder's bounded "
            "buffer was full (the alerts themselves are unaffected).",
            registry=r,
        )
        self.dead_letters = Gauge(
            "alert_router_dead_letters",
            "Notifications kept as dead letters (permanent vendor errors), waiting for replay.",
            registry=r,
        )
        self.claims_taken_over = Counter(
            "alert_router_claims_taken_over_total",
            "Claimed alerts (inbox) and notifications (outbox) taken over after their "
            "replica's lease ran out: a replica died. Taken-over outbox items that were "
            "mid-send are the only source of duplicates.",
            ["queue"],
            registry=r,
        )
        self.digests = Counter(
            "alert_router_slack_digests_total",
            "Slack digest messages sent instead of one message per alert.",
            ["destination"],
            registry=r,
        )
        self.config_reloads = Counter(
            "alert_router_config_reloads_total",
            "Rules file loads, by outcome (success, failure).",
            ["outcome"],
            registry=r,
        )
        self.config_last_reload_ok = Gauge(
            "alert_router_config_last_reload_successful",
            "1 when the last attempt to load the rules file succeeded.",
            registry=r,
        )
        self.config_last_reload_time = Gauge(
            "alert_router_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful rules load.",
            registry=r,
        )
        self.prometheus_queries = Counter(
            "alert_router_prometheus_queries_total",
            "PromQL queries sent to Prometheus for cost context, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.context_unavailable = Counter(
            "alert_router_context_unavailable_total",
            "Cost-context values missing from an alert, by reason.",
            ["reason"],
            registry=r,
        )
        self.slack_actions = Counter(
            "alert_router_slack_actions_total",
            "Slack button presses on /slack/actions, by action and outcome.",
            ["action", "outcome"],
            registry=r,
        )
        for source in SOURCES:
            self.alerts_received.labels("accepted", source)
            self.alerts_received.labels("duplicate", source)
            self.webhooks.labels("200", source)
            for reason in REJECT_REASONS:
                self.alerts_rejected.labels(reason, source)
        for source in WEBHOOK_SOURCES:
            for reason in WEBHOOK_REFUSALS:
                self.webhooks_refused.labels(reason, source)
        for queue in ("inbox", "outbox"):
            self.queue_depth.labels(queue)
            self.claims_taken_over.labels(queue)
        for outcome in ("success", "failure"):
            self.config_reloads.labels(outcome)
        for outcome in ("success", "failure"):
            self.prometheus_queries.labels(outcome)
        for reason in ContextFailure:
            self.context_unavailable.labels(reason)
        for action in SLACK_ACTIONS:
            for outcome in SLACK_ACTION_OUTCOMES:
                self.slack_actions.labels(action, outcome)
        for outcome in SLACK_REQUEST_REJECTIONS:
            self.slack_actions.labels("unknown", outcome)

    def init_destinations(self, names: Iterable[str]) -> None:
        """Start every destination x outcome/reason series at zero."""
        for name in names:
            for outcome in DELIVERY_OUTCOMES:
                self.notifications.labels(name, outcome)
            for reason in DedupReason:
                self.dedup.labels(name, reason.value)
            self.retries.labels(name)
            self.digests.labels(name)
