"""The pipeline's knobs: batch sizes, leases, polling, backoff, retention and fairness."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tuning:
    route_batch: int = 500
    # How long a claim outlives a replica that stops renewing it (it died): the time a
    # dead replica's work waits before another takes it. Renewed three times a lease.
    lease: float = 12.0
    poll_interval: float = 0.5
    # A Slack destination with more than this many notifications waiting gets a digest.
    digest_after: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    housekeeping_interval: float = 5.0
    dedup_window: float = 60.0
    ledger_retention: float = 5 * 86400.0
    # The history: episodes last changed longer ago are forgotten, then the oldest beyond
    # the bound (ALERT_ROUTER_HISTORY_RETENTION, _MAX_EPISODES), every purge interval.
    history_retention: float = 7 * 86400.0
    history_max_episodes: int = 100_000
    history_purge_interval: float = 60.0
    # A destination without a rate limit whose notifier sends one notification at a time
    # (PagerDuty) gets this many sends in flight at once.
    parallel_sends: int = 8
    # While webhooks arrive, routing takes batches of `storm_batch` and adds cost context
    # `enrich_chunk` alerts at a time; when `queued_webhooks` or more wait for an answer,
    # routing and each delivery loop keep only about `pipeline_share` of the time (see
    # `receiver.pipeline.scheduler`).
    storm_batch: int = 32
    enrich_chunk: int = 8
    # While webhooks arrive, routing waits this long after a batch that emptied the inbox,
    # so the next one gathers a few alerts: its store round trips, the cost context and
    # the log line are paid per batch, and alone they cost more than routing one alert.
    route_linger: float = 0.01
    queued_webhooks: int = 4
    pipeline_share: float = 0.1
    # Notifications for a destination the rules no longer name wait this long (the rules
    # may come back, or differ between replicas during a rollout), then become dead
    # letters, which `alert-router dead-letters retry` queues again.
    orphan_grace: float = 600.0
    # Closing a notifier releases one pooled connection; one that hangs (a peer that
    # never answers the close) must not hold up a shutdown.
    close_timeout: float = 5.0
    # `Pipeline.stop`: a send in flight gets `send_grace` seconds to finish and be recorded;
    # the whole stop returns within `stop_timeout`, abandoning what still runs then.
    send_grace: float = 3.0
    stop_timeout: float = 6.0
