"""`alert-router report NAME`: one cost report of the rules file, built now (or at --at).

`--dry-run` prints its text form and sends nothing; `--chart FILE.png` writes its chart.
Without `--dry-run` the report goes straight to its destinations through the Slack
notifiers: a person asked for it now, so it skips the service's outbox (no retries, no
dead letter) and the scheduled report of that slot is still sent as usual.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from receiver.cli.common import config_arg, load_or_explain, settings_from
from receiver.config.reports import ReportSpec
from receiver.config.rules import Rules
from receiver.config.secrets import SecretStore
from receiver.config.settings import Settings
from receiver.context.prometheus import PrometheusClient
from receiver.metrics import Metrics
from receiver.notify.base import NotifyError
from receiver.notify.slack.bot import ChartNotUploaded
from receiver.reports.render import render_text
from receiver.reports.sections import build_report
from receiver.runtime import report_poster

HELP = "build a cost report of the rules now: print it (--dry-run) or send it"
DESCRIPTION = (
    "Build the report NAME of the rules file for the window ending now (or at --at). "
    "--dry-run prints it and sends nothing; --chart writes its PNG. Without --dry-run it is "
    "sent at once to the report's Slack destinations, straight through the notifiers: it "
    "bypasses the service's outbox (no retries, no dead letters) and does not count as the "
    "scheduled report of its slot. The cost incidents section is empty here: it lists the "
    "episodes the running service recorded."
)
# `--at` in the report's own zone, as a person reads the schedule.
_LOCAL = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = sub.add_parser("report", help=HELP, description=DESCRIPTION)
    config_arg(report)
    report.add_argument("name", metavar="NAME", help="a report under reports: in the rules")
    report.add_argument(
        "--at",
        metavar="TIME",
        help="the window's end: RFC 3339 (2026-03-02T09:00:00+01:00) or 'YYYY-MM-DD HH:MM' "
        "in the report's timezone (default: now)",
    )
    report.add_argument("--dry-run", action="store_true", help="print the report, send nothing")
    report.add_argument("--chart", type=Path, metavar="FILE.png", help="write the chart here")


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    rules = load_or_explain(settings)
    if rules is None:
        return 2
    spec = rules.reports.get(args.name)
    if spec is None:
        known = ", ".join(sorted(rules.reports)) or "none defined"
        print(
            f"alert-router: no report {args.name!r} in {rules.path} (reports: {known})",
            file=sys.stderr,
        )
        return 2
    try:
        at = parse_at(args.at, spec.zone) if args.at else datetime.now(UTC)
    except ValueError as exc:
        print(f"alert-router: {exc}", file=sys.stderr)
        return 2
    secrets = SecretStore(settings.secrets_dir)
    if not args.dry_run:
        missing = _missing_secrets(spec, rules, secrets)
        if missing:
            for problem in missing:
                print(f"alert-router: {problem}", file=sys.stderr)
            return 2
    return asyncio.run(_report(args, settings, rules, spec, at, secrets))


def parse_at(text: str, zone: ZoneInfo) -> datetime:
    """`--at` as a UTC instant: RFC 3339, or `YYYY-MM-DD HH:MM` read in `zone`."""
    problem = (
        f"--at {text!r} is not a time: write RFC 3339 (2026-03-02T09:00:00+01:00) or "
        f"'YYYY-MM-DD HH:MM' in the report's timezone ({zone.key})"
    )
    try:
        if _LOCAL.match(text):
            # A wall time is read as the schedule reads it: the first one when it happens
            # twice (fold=0).
            at = datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=zone)
        else:
            # RFC 3339 (Python 3.11 reads a trailing Z); an offset is required.
            at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(problem) from None
    if at.tzinfo is None:
        raise ValueError(problem)
    return at.astimezone(UTC)


async def _report(
    args: argparse.Namespace,
    settings: Settings,
    rules: Rules,
    spec: ReportSpec,
    at: datetime,
    secrets: SecretStore,
) -> int:
    async with httpx.AsyncClient() as client:
        prometheus = PrometheusClient(client, Metrics())
        report = await build_report(
            args.name, spec, rules, prometheus, at, prometheus_url=settings.prometheus_url
        )
    for section, reason in report.unavailable:
        print(f"alert-router: section {section} unavailable: {reason}", file=sys.stderr)
    bots = [n for n in spec.to if (d := rules.destinations[n].slack) and d.token is not None]
    chart: bytes | None = None
    if args.chart is not None or (spec.chart and bots and not args.dry_run):
        # matplotlib is imported only when a chart is drawn: it takes a while to load.
        from receiver.reports.chart import render_chart

        chart = render_chart(report)
    if args.chart is not None:
        assert chart is not None
        try:
            args.chart.write_bytes(chart)
        except OSError as exc:
            print(f"alert-router: cannot write {args.chart}: {exc.strerror}", file=sys.stderr)
            return 1
        print(f"chart written to {args.chart}", file=sys.stderr)
    if args.dry_run:
        print(render_text(report), end="")
        return 1 if report.unavailable else 0
    failed = False
    for name in spec.to:
        upload = chart if spec.chart else None
        post, close = report_poster(
            name, rules.destinations[name], settings, secrets, report, upload
        )
        try:
            await post(None)
            print(f"report {args.name} sent to {name}")
        except ChartNotUploaded as exc:
            failed = True
            print(
                f"alert-router: {name}: report posted, chart not uploaded: {exc}", file=sys.stderr
            )
        except NotifyError as exc:
            failed = True
            print(f"alert-router: {name}: report not sent: {exc}", file=sys.stderr)
        finally:
            await close()
    return 1 if failed or report.unavailable else 0


def _missing_secrets(spec: ReportSpec, rules: Rules, secrets: SecretStore) -> list[str]:
    return [
        f"destination {name} needs the secret {key}, which is not set"
        for name in spec.to
        for key in rules.destinations[name].secret_keys()
        if secrets.get(key) is None
    ]
