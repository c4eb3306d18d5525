"""Assembling the service from settings: store, rules, secrets, notifiers, context."""

from __future__ import annotations

import httpx

from receiver.config.reloader import RulesHolder
from receiver.config.rules import Rules
from receiver.config.secrets import SecretStore
from receiver.config.settings import Settings
from receiver.context.enrich import Enricher
from receiver.ingest.auth import WEBHOOK_TOKEN
from receiver.metrics import Metrics
from receiver.notify.dryrun import Emit, log_emit
from receiver.notify.factory import build_notifiers
from receiver.notify.slack.buttons import slack_buttons
from receiver.server import Service
from receiver.slack_actions.verify import SIGNING_SECRET
from receiver.store import open_store


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
    return Service(
        settings=settings,
        store=open_store(settings.state, busy_timeout=settings.sqlite_busy_timeout),
        holder=holder,
        secrets=secrets,
        metrics=metrics,
        notifiers=lambda rules: build_notifiers(
            rules, secrets, settings, dry_run=dry_run, emit=emit
        ),
        context=enricher,
        auth=auth,
        http=http,
    )
