"""The rules file's schema: what `rules/routes.yaml` may say, as strict pydantic models.

Unknown keys are refused (`extra="forbid"`); `receiver.config.rules` compiles a validated
file into the routes the router runs, and reports every problem with its place.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from receiver.config.durations import parse_duration
from receiver.config.reports import ReportSpec
from receiver.models import Unit

DEFAULT_REPEAT_INTERVAL = 4 * 3600.0
_KEY_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


def _duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m or 4h")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError("expected a duration such as 30s, 5m or 4h")


Duration = Annotated[float, BeforeValidator(_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SecretRef(_Strict):
    """A key of the `alert-secrets` Secret: `{secret: pagerduty-key}`."""

    secret: str = Field(pattern=_KEY_NAME)


DEFAULT_SILENCE_DURATIONS = (3600.0, 4 * 3600.0, 24 * 3600.0)
# Our own bound: the buttons must stay one readable row (Slack allows 25 per actions block).
MAX_SILENCE_BUTTONS = 5


class SlackSpec(_Strict):
    webhook_url: SecretRef | None = None
    token: SecretRef | None = None
    channel: str | None = None
    # Slack: "1 message per second per channel" for incoming webhooks and chat.postMessage.
    max_per_second: float = Field(default=1.0, ge=0)
    # Buttons on the firing messages of a bot (token) destination: silence in Alertmanager
    # (needs `alertmanager.url`) and acknowledge in PagerDuty. Incoming webhooks cannot
    # carry buttons that work, so neither key is allowed there.
    buttons: bool | None = None
    silence_durations: list[Duration] | None = None
    # A bot destination can upload, in a firing alert's thread, the chart of its $/h
    # series over the last hours (the files:write scope). Incoming webhooks cannot upload
    # files, so charts: true is refused there.
    charts: bool = False

    @model_validator(mode="after")
    def _one_way(self) -> SlackSpec:
        if (self.webhook_url is None) == (self.token is None):
            raise ValueError("set exactly one of webhook_url or token (with channel)")
        if self.token is not None and not self.channel:
            raise ValueError("a token destination needs channel, e.g. channel: '#gpu-costs'")
        if self.webhook_url is not None and (
            self.buttons is not None or self.silence_durations is not None
        ):
            raise ValueError(
                "buttons and silence_durations need a bot destination (token and channel): "
                "incoming-webhook messages keep the silence link"
            )
        if self.webhook_url is not None and self.charts:
            raise ValueError(
                "charts need a bot destination (token and channel): incoming webhooks "
                "cannot upload files"
            )
        return self

    @field_validator("silence_durations")
    @classmethod
    def _durations(cls, value: list[float] | None) -> list[float] | None:
        if value is None:
            return None
        if len(value) > MAX_SILENCE_BUTTONS:
            raise ValueError(f"at most {MAX_SILENCE_BUTTONS} silence durations")
        if any(seconds < 60 for seconds in value):
            raise ValueError("a silence lasts at least 1m")
        if len(set(value)) != len(value):
            raise ValueError("each silence duration once")
        return value

    @property
    def buttons_on(self) -> bool:
        """Whether firing messages carry buttons: bot destinations, unless turned off."""
        return self.token is not None and self.buttons is not False

    @property
    def silence_buttons(self) -> tuple[float, ...]:
        """Durations of the silence buttons, in seconds (none for incoming webhooks)."""
        if not self.buttons_on:
            return ()
        if self.silence_durations is None:
            return DEFAULT_SILENCE_DURATIONS
        return tuple(self.silence_durations)


Severity = Literal["critical", "error", "warning", "info"]


class PagerDutySpec(_Strict):
    routing_key: SecretRef
    default_severity: Severity = "warning"
    # PagerDuty Events API v2: about 120 events per minute per routing key.
    max_per_minute: float = Field(default=120.0, ge=0)
    # Read only to be refused with its reason (an unknown key would say "check its
    # spelling"): alert charts are files uploaded to Slack.
    charts: bool | None = None

    @field_validator("charts")
    @classmethod
    def _no_charts(cls, value: bool | None) -> None:
        if value is not None:
            raise ValueError(
                "charts are uploaded to Slack bot destinations only: PagerDuty events carry "
                "no files (remove charts here)"
            )
        return None


class DestinationSpec(_Strict):
    slack: SlackSpec | None = None
    pagerduty: PagerDutySpec | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> DestinationSpec:
        if (self.slack is None) == (self.pagerduty is None):
            raise ValueError("a destination is exactly one of slack or pagerduty")
        return self

    def secret_keys(self) -> list[str]:
        keys: list[str] = []
        if self.slack is not None:
            ref = self.slack.webhook_url or self.slack.token
            assert ref is not None
            keys.append(ref.secret)
        if self.pagerduty is not None:
            keys.append(self.pagerduty.routing_key.secret)
        return keys


class PrometheusSpec(_Strict):
    url: str = "http://localhost:9090"
    timeout: Duration = 2.0
    cache_ttl: Duration = 30.0


class AlertmanagerSpec(_Strict):
    url: str
    # Silences are created while Slack waits for its answer (Slack: within 3 seconds).
    timeout: Duration = Field(default=2.0, gt=0)


class ContextSpec(_Strict):
    """A named cost-context value: a PromQL instant query joined to alerts on labels."""

    query: str = Field(min_length=1)
    unit: Unit
    title: str | None = None
    # Alert label -> result label, where the names differ (alert `Hostname` is the
    # cost exporter's `node`). Other shared label names join as they are.
    join: dict[str, str] = Field(default_factory=dict)
    # For a $/hour value: at resolve, what the episode cost between startsAt and endsAt.
    incident_cost: bool = False

    @model_validator(mode="after")
    def _incident_needs_rate(self) -> ContextSpec:
        if self.incident_cost and self.unit is not Unit.USD_PER_HOUR:
            raise ValueError("incident_cost needs unit usd_per_hour (it integrates $/hour)")
        return self

    @property
    def display_title(self) -> str:
        return self.title or ""


class BudgetsSpec(_Strict):
    """The platform's `cost_allocation.json`: {service: {budget_monthly, alert_threshold}}."""

    file: str
    service_label: str = "service"


# Grafana's docs: the signature header "Default is X-Grafana-Alerting-Signature".
DEFAULT_SIGNATURE_HEADER = "X-Grafana-Alerting-Signature"
# grafana/alerting's code signs into this one when a contact point leaves the header empty
# (http/hmac.go: defaultHeaderName); read too while `signature_header` is not set.
GRAFANA_CODE_SIGNATURE_HEADER = "X-Grafana-Alert-Signature"
# An HTTP field name (RFC 9110, section 5.1: a token).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Headers the webhook endpoint reads for something else.
_RESERVED_HEADERS = ("authorization", "content-type", "content-length")


class GrafanaHmacSpec(_Strict):
    """Where Grafana's webhook carries its HMAC signature: `hmacConfig.header` and
    `hmacConfig.timestampHeader` of the contact point, which must say the same."""

    signature_header: str = DEFAULT_SIGNATURE_HEADER
    # No default, as in Grafana: without it the signature covers the body alone.
    timestamp_header: str | None = None

    @field_validator("signature_header", "timestamp_header")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if value is not None and _HEADER_NAME.fullmatch(value) is None:
            raise ValueError(
                f"{value!r} is not an HTTP header name: letters, digits and dashes, "
                "e.g. X-Grafana-Alerting-Signature"
            )
        return value

    @model_validator(mode="after")
    def _distinct(self) -> GrafanaHmacSpec:
        for name in (self.signature_header, self.timestamp_header):
            if name is not None and name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"{name} carries something else: name another header")
        stamp = self.timestamp_header
        if stamp is not None and stamp.lower() == self.signature_header.lower():
            raise ValueError("signature_header and timestamp_header must be two headers")
        return self


class GrafanaSpec(_Strict):
    """Grafana Alerting as a webhook source."""

    hmac: GrafanaHmacSpec = Field(default_factory=GrafanaHmacSpec)


class RouteDefaults(_Strict):
    repeat_interval: Duration = DEFAULT_REPEAT_INTERVAL
    send_resolved: bool = True


class RouteSpec(_Strict):
    name: str = Field(min_length=1)
    matchers: list[str] = Field(default_factory=list)
    when: dict[str, str] = Field(default_factory=dict)
    to: list[str] = Field(min_length=1)
    continue_: bool = Field(default=False, alias="continue")
    repeat_interval: Duration | None = None
    send_resolved: bool | None = None


class RulesFile(_Strict):
    prometheus: PrometheusSpec = Field(default_factory=PrometheusSpec)
    alertmanager: AlertmanagerSpec | None = None
    destinations: dict[str, DestinationSpec] = Field(min_length=1)
    context: dict[str, ContextSpec] = Field(default_factory=dict)
    budgets: BudgetsSpec | None = None
    grafana: GrafanaSpec = Field(default_factory=GrafanaSpec)
    defaults: RouteDefaults = Field(default_factory=RouteDefaults)
    routes: list[RouteSpec] = Field(default_factory=list)
    default: str | None = None
    # Scheduled cost reports (receiver.config.reports), by name.
    reports: dict[str, ReportSpec] = Field(default_factory=dict)
