"""Settings from the environment (DESIGN.md, "Settings")."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from receiver.config.schema import Duration
from receiver.config.secrets import DEFAULT_SECRETS_DIR

SLACK_API_URL = "https://slack.com/api/"
# PagerDuty Events API v2 enqueue endpoint.
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


class Settings(BaseSettings):
    """Every knob the environment can set. Names are the documented variables."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    config: Path = Field(default=Path("rules/routes.yaml"), alias="ALERT_ROUTER_CONFIG")
    state: str = Field(default="data/alert-router.db", alias="ALERT_ROUTER_STATE")
    prometheus_url: str | None = Field(default=None, alias="PROMETHEUS_URL")
    secrets_dir: Path = Field(default=DEFAULT_SECRETS_DIR, alias="ALERT_ROUTER_SECRETS_DIR")
    slack_api_url: str = Field(default=SLACK_API_URL, alias="SLACK_API_URL")
    pagerduty_events_url: str = Field(default=PAGERDUTY_EVENTS_URL, alias="PAGERDUTY_EVENTS_URL")
    host: str = Field(default="0.0.0.0", alias="ALERT_ROUTER_HOST")
    port: int = Field(default=8080, alias="ALERT_ROUTER_PORT")
    log_format: Literal["json", "text"] = Field(default="json", alias="ALERT_ROUTER_LOG_FORMAT")
    # A webhook is one Alertmanager group with `max_alerts: 0`, and a refused group is never
    # retried (a 4xx), so the limit must hold the largest group. At about 800 bytes an alert
    # (tests/ingest/support.py: large_group), 16 MiB is some 20,000 alerts. Ingest holds a
    # few times the body at its peak (tests/ingest/test_large_groups.py prints the figures):
    # the Deployment's 512Mi memory limit holds two such webhooks at once.
    max_body_bytes: int = Field(
        default=DEFAULT_MAX_BODY_BYTES, alias="ALERT_ROUTER_MAX_BODY_BYTES", gt=0
    )
    # Exact copies (same fingerprint, status, startsAt) within this window are duplicates.
    dedup_window: float = Field(default=60.0, alias="ALERT_ROUTER_DEDUP_WINDOW", ge=0)
    # How long a claim outlives its replica: a heartbeat renews the claims of a live
    # replica three times per lease, so a dead replica's work moves to another within one
    # lease (tests/test_replicas.py measures the failover), and a slow one keeps its own.
    lease: float = Field(default=12.0, alias="ALERT_ROUTER_LEASE_SECONDS", gt=0)
    # Connections served at once; one more is answered 503 (Alertmanager retries a 5xx).
    max_connections: int = Field(default=512, alias="ALERT_ROUTER_MAX_CONNECTIONS", gt=0)
    # A request whose head and body have not arrived this long after its first byte is
    # closed: uvicorn has no header timeout, and slow senders would hold connections forever.
    request_timeout: float = Field(default=15.0, alias="ALERT_ROUTER_REQUEST_TIMEOUT", gt=0)
    # How long a SQLite write waits for a lock before ingest answers 503.
    sqlite_busy_timeout: float = Field(default=5.0, alias="ALERT_ROUTER_SQLITE_BUSY_TIMEOUT", gt=0)
    # The history (what happened to each alert, for the page, the API and `explain`):
    # episodes last changed longer ago than this are forgotten, and the oldest beyond the
    # count, so the store's size is bounded however many alerts arrive.
    history_retention: Duration = Field(
        default=7 * 86400.0, alias="ALERT_ROUTER_HISTORY_RETENTION", gt=0
    )
    history_max_episodes: int = Field(
        default=100_000, alias="ALERT_ROUTER_HISTORY_MAX_EPISODES", gt=0
    )
