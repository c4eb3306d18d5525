"""Assembling the service from settings: store, rules, secrets, notifiers, context, reports."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import httpx

from receiver.config.reloader import RulesHolder
from receiver.config.reports import ReportSpec
from receiver.config.rules import Rules
from receiver.config.schema import DestinationSpec
from receiver.config.secrets import SecretStore
from receiver.config.settings import Settings
from receiver.context.enrich import Enricher
from receiver.context.prometheus import PrometheusClient
from receiver.ingest.auth import WEBHOOK_TOKEN
from receiver.metrics import Metrics
from receiver.notify.base import Ref
from receiver.notify.dryrun import Emit, log_emit
from receiver.notify.factory import build_notifiers
from receiver.notify.slack.bot import SlackBotNotifier
from receiver.notify.slack.buttons import slack_buttons
from receiver.notify.slack.report import chart_title, report_message
from receiver.notify.slack.webhook import SlackWebhookNotifier
from receiver.pipeline.reports import PostReport, ReportWork
from receiver.reports.model import Report
from receiver.reports.render import render_text
from receiver.reports.schedule import Slot
from receiver.reports.sections import build_report
from receiver.server import Service
from receiver.slack_actions.verify import SIGNING_SECRET
from receiver.store import open_store

log = logging.getLogger("alert_router.runtime")


def missing_secrets(rules: Rules, secrets: SecretStore) -> list[str]:
    """One line per secret the destinations need that cannot be found."""
    problems = []
    for key, destinations in sorted(rules.secret_keys().items()):
        if secrets.get(key) is None:
            problems.append(
                f"secret {key!r} (needed by {', '.join(destinations)}) is missing: "
                f"no file {secrets.directory / key} and no environment variable "
                f"{key.upper().replace('-', '_')}"
            )
    return problems


def button_warnings(rules: Rules, secrets: SecretStore) -> list[str]:
    """One line per bot destination whose messages carry buttons that Slack's presses
    could not be verified for (no signing secret): every press would be refused."""
    if secrets.get(SIGNING_SECRET) is not None:
        return []
    with_buttons = [name for name in rules.destinations if slack_buttons(rules, name) is not None]
    if not with_buttons:
        return []
    return [
        f"secret {SIGNING_SECRET!r} is missing, so presses of the buttons on "
        f"{', '.join(with_buttons)}'s messages will be refused: add the Slack app's signing "
        f"secret as {secrets.directory / SIGNING_SECRET} (or SLACK_SIGNING_SECRET), or set "
        "buttons: false on those destinations"
    ]


def missing_token(secrets: SecretStore) -> str | None:
    if secrets.get(WEBHOOK_TOKEN) is not None:
        return None
    return (
        f"secret {WEBHOOK_TOKEN!r} is missing: Alertmanager's bearer token is read from "
        f"{secrets.directory / WEBHOOK_TOKEN} or WEBHOOK_TOKEN; "
        "pass --no-auth to run with an open endpoint"
    )


def refusals(rules: Rules, secrets: SecretStore, *, auth: bool, dry_run: bool) -> list[str]:
    """Why `serve` must not start: the webhook token (unless `auth` is off), then the
    destinations' secrets (unless nothing is sent: `dry_run`)."""
    token = missing_token(secrets) if auth else None
    return ([token] if token else []) + ([] if dry_run else missing_secrets(rules, secrets))


def build_service(
    settings: Settings,
    *,
    dry_run: bool = False,
    auth: bool = True,
    emit: Emit = log_emit,
    secrets: SecretStore | None = None,
) -> Service:
    metrics = Metrics()
    secrets = secrets or SecretStore(settings.secrets_dir)

    def validate(rules: Rules) -> list[str]:
        # A new rules file whose destinations lack their secrets is refused like any
        # other invalid file: the rules in force keep serving.
        return [] if dry_run else missing_secrets(rules, secrets)

    holder = RulesHolder(settings.config, metrics, validate=validate)
    http = httpx.AsyncClient()
    enricher = Enricher(http, metrics, prometheus_url=settings.prometheus_url)
    # Alert charts (bot destinations with `charts: true`) query the alert's $/h series.
    prometheus = PrometheusClient(http, metrics)
    reports = report_work(settings, secrets, http, metrics, lambda: holder.rules, dry_run=dry_run)
    return Service(
        settings=settings,
        store=open_store(settings.state, busy_timeout=settings.sqlite_busy_timeout),
        holder=holder,
        secrets=secrets,
        metrics=metrics,
        notifiers=lambda rules: build_notifiers(
            rules, secrets, settings, dry_run=dry_run, emit=emit, prometheus=prometheus
        ),
        context=enricher,
        auth=auth,
        http=http,
        reports=reports,
    )


def report_poster(
    name: str,
    destination: DestinationSpec,
    settings: Settings,
    secrets: SecretStore,
    report: Report,
    chart: bytes | None,
) -> tuple[PostReport, Callable[[], Awaitable[None]]]:
    """How `report` goes to destination `name`, and how to close its notifier after.

    Incoming webhooks cannot upload files: they get the text and Prometheus' graph link;
    a bot destination also gets `chart` in the report's thread (the files:write scope)."""
    slack = destination.slack
    assert slack is not None  # rules validation: reports go to Slack destinations only
    if slack.webhook_url is not None:
        hook = SlackWebhookNotifier(name, secrets.source(slack.webhook_url.secret))
        message = report_message(report, graph_link=True)
        return (lambda _posted: hook.post_report(message)), hook.aclose
    assert slack.token is not None and slack.channel is not None
    bot = SlackBotNotifier(
        name, secrets.source(slack.token.secret), slack.channel, api_url=settings.slack_api_url
    )
    message = report_message(report)
    title = chart_title(report)

    def post(posted: Ref | None) -> Awaitable[Ref]:
        return bot.post_report(message, chart, chart_title=title, posted=posted)

    return post, bot.aclose


def report_work(
    settings: Settings,
    secrets: SecretStore,
    http: httpx.AsyncClient,
    metrics: Metrics,
    rules: Callable[[], Rules],
    *,
    dry_run: bool,
) -> ReportWork:
    """The pipeline's scheduled reports: built from Prometheus at the slot's time, sent to
    each destination of the report (logged instead, in dry run)."""
    prometheus = PrometheusClient(http, metrics)

    async def build(name: str, spec: ReportSpec, slot: Slot) -> Report:
        return await build_report(
            name, spec, rules(), prometheus, slot.at, late=slot.late,
            prometheus_url=settings.prometheus_url,
        )  # fmt: skip

    def poster(
        destination: str, report: Report, chart: bytes | None
    ) -> tuple[PostReport, Callable[[], Awaitable[None]]]:
        if dry_run:

            async def logged(_posted: Ref | None) -> Ref:
                log.info(
                    "report (dry run)",
                    extra={
                        "report": report.name,
                        "destination": destination,
                        "text": render_text(report),
                    },
                )
                return {}

            async def nothing() -> None:
                return None

            return logged, nothing
        spec = rules().destinations[destination]
        return report_poster(destination, spec, settings, secrets, report, chart)

    async def draw(report: Report) -> bytes:
        # matplotlib loads only when a chart is drawn.
        from receiver.reports.chart import render_chart

        return await asyncio.to_thread(render_chart, report)

    def takes_chart(destination: str) -> bool:
        spec = rules().destinations.get(destination)
        slack = None if spec is None else spec.slack
        return not dry_run and slack is not None and slack.token is not None

    return ReportWork(build, poster, draw, takes_chart)
