"""The `alert-router` command line: serve, check, route, send, test, report, demo,
dead-letters. Each command with more than a screen of its own lives in its own module."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx

from receiver import __version__
from receiver.cli import explain, report
from receiver.cli.common import config_arg, load_or_explain, pairs, settings_from
from receiver.config.rules import Rules
from receiver.config.secrets import SecretStore
from receiver.config.settings import Settings
from receiver.history.capture import replayed_events
from receiver.logs import configure
from receiver.routing.tester import parse_context, route_report

log = logging.getLogger("alert_router.cli")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    handler = _COMMANDS[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alert-router",
        description="Alertmanager webhook receiver: cost context, dedup, Slack and PagerDuty.",
    )
    parser.add_argument("--version", action="version", version=f"alert-router {__version__}")
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="run the service")
    config_arg(serve)
    serve.add_argument("--dry-run", action="store_true", help="render and log, send nothing")
    serve.add_argument(
        "--no-auth", action="store_true", help="accept webhooks without a bearer token (open!)"
    )
    serve.add_argument("--host", help="listen address (ALERT_ROUTER_HOST)")
    serve.add_argument("--port", type=int, help="listen port (ALERT_ROUTER_PORT)")
    serve.add_argument(
        "--loop",
        choices=["auto", "asyncio", "uvloop"],
        default="auto",
        help="event loop (auto: uvloop when installed)",
    )

    check = sub.add_parser("check", help="validate rules and secrets")
    config_arg(check)
    check.add_argument(
        "--online", action="store_true", help="also run every context query against Prometheus"
    )

    route = sub.add_parser("route", help="which routes and destinations an alert reaches")
    config_arg(route)
    route.add_argument("labels", nargs="+", metavar="label=value")
    route.add_argument(
        "--context",
        action="append",
        default=[],
        metavar="name=value",
        help="a cost-context value, e.g. cost_per_hour=120 (repeatable)",
    )

    send = sub.add_parser("send", help="post a test alert to a running router")
    send.add_argument("alert", nargs="+", metavar="FILE|label=value")
    send.add_argument("--url", help="the router's /alerts URL (default: local ALERT_ROUTER_PORT)")
    send.add_argument("--token", help="bearer token (default: the webhook-token secret)")
    send.add_argument("--status", choices=["firing", "resolved"], default="firing")
    send.add_argument(
        "--annotation", action="append", default=[], metavar="name=value", help="repeatable"
    )

    test = sub.add_parser("test", help="run a YAML file of routing tests against the rules")
    config_arg(test)
    test.add_argument("file", type=Path)

    report.add_parser(sub)
    explain.add_parser(sub)

    demo = sub.add_parser(
        "demo", help="the main job on this machine, in dry-run, with sample alerts"
    )
    demo.add_argument(
        "--serve",
        action="store_true",
        help="keep the router and its web page up after the run, until Ctrl-C",
    )

    dead = sub.add_parser("dead-letters", help="list or replay notifications that failed for good")
    dead_sub = dead.add_subparsers(dest="action", required=True)
    dead_sub.add_parser("list", help="list dead letters")
    retry = dead_sub.add_parser("retry", help="queue dead letters for delivery again")
    retry.add_argument("ids", nargs="*", metavar="ID")
    retry.add_argument("--all", action="store_true", help="replay every dead letter")
    return parser


# -- serve -------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from receiver import serving
    from receiver.runtime import build_service, button_warnings, refusals

    settings = settings_from(args)
    configure(settings.log_format)
    rules = load_or_explain(settings)
    if rules is None:
        return 2
    secrets = SecretStore(settings.secrets_dir)
    if args.no_auth:
        log.warning(
            "AUTHENTICATION IS OFF (--no-auth): anyone who can reach this port can post alerts"
        )
    problems = refusals(rules, secrets, auth=not args.no_auth, dry_run=args.dry_run)
    for problem in problems:
        print(f"alert-router: refusing to start: {problem}", file=sys.stderr)
    if problems:
        return 2
    for warning in [] if args.dry_run else button_warnings(rules, secrets):
        log.warning("Slack buttons cannot be verified", extra={"problem": warning})
    service = build_service(settings, dry_run=args.dry_run, auth=not args.no_auth, secrets=secrets)
    service.holder.load()
    log.info(
        "starting",
        extra={
            "listen": f"{settings.host}:{settings.port}",
            "rules": str(settings.config),
            "dry_run": args.dry_run,
        },
    )
    # Ends the process: every way out of it is bounded (see receiver/serving.py).
    serving.serve(
        service.app(),
        host=settings.host,
        port=settings.port,
        loop=args.loop,
        max_connections=settings.max_connections,
        request_timeout=settings.request_timeout,
    )


# -- check -------------------------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    from receiver.runtime import button_warnings, missing_secrets, missing_token

    settings = settings_from(args)
    rules = load_or_explain(settings)
    if rules is None:
        return 1
    secrets = SecretStore(settings.secrets_dir)
    problems = missing_secrets(rules, secrets)
    warnings = button_warnings(rules, secrets)
    token = missing_token(secrets)
    if token:
        problems.append(token)
    print(f"{rules.path}: rules valid")
    print(f"  destinations ({len(rules.destinations)}):")
    for name, spec in rules.destinations.items():
        if spec.slack is not None:
            kind = "slack webhook" if spec.slack.webhook_url else f"slack bot {spec.slack.channel}"
        else:
            kind = "pagerduty"
        keys = ", ".join(
            f"{key} ({'found' if secrets.get(key) else 'MISSING'})" for key in spec.secret_keys()
        )
        print(f"    {name}: {kind}; secret {keys}")
    print(f"  routes ({len(rules.routes)}): {', '.join(r.name for r in rules.routes)}")
    print(f"  default: {rules.default or '(none: unmatched alerts are dropped)'}")
    print(f"  context values ({len(rules.context)}): {', '.join(rules.context) or 'none'}")
    print(f"  reports ({len(rules.reports)}):" + ("" if rules.reports else " none"))
    for name, sched in rules.reports.items():
        print(
            f"    {name}: {sched.schedule.text!r} {sched.timezone}, to {', '.join(sched.to)}; "
            f"{', '.join(sched.sections)}" + ("; chart" if sched.chart else "")
        )
    if args.online:
        problems.extend(asyncio.run(_check_online(rules, settings)))
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s):", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print("OK")
    return 0


async def _check_online(rules: Rules, settings: Settings) -> list[str]:
    from receiver.context.enrich import Enricher
    from receiver.metrics import Metrics

    async with httpx.AsyncClient() as client:
        enricher = Enricher(client, Metrics(), prometheus_url=settings.prometheus_url)
        problems = await enricher.check_queries(rules)
    if not problems:
        print(f"  context queries: all {len(rules.context)} answered by Prometheus")
    return problems


# -- route -------------------------------------------------------------------------------


def _route(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    rules = load_or_explain(settings)
    if rules is None:
        return 1
    labels = pairs(args.labels, "label")
    try:
        context = parse_context(rules, pairs(args.context, "context value"))
    except ValueError as exc:
        print(f"alert-router: {exc}")
        return 2
    for line in route_report(rules, labels, context):
        print(line)
    return 0


# -- send --------------------------------------------------------------------------------


def _send(args: argparse.Namespace) -> int:
    from receiver.samples import webhook

    settings = Settings()
    first = Path(args.alert[0])
    if len(args.alert) == 1 and "=" not in args.alert[0]:
        try:
            data = json.loads(first.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            print(f"alert-router: cannot read {first}: {exc}", file=sys.stderr)
            return 2
        payload = data if isinstance(data, dict) and "alerts" in data else None
        if payload is None and isinstance(data, dict) and "labels" in data:
            payload = webhook([(data["labels"], data.get("annotations", {}))], status=args.status)
        if payload is None:
            print(f"alert-router: {first} is neither a webhook nor an alert", file=sys.stderr)
            return 2
    else:
        labels = pairs(args.alert, "label")
        labels.setdefault("alertname", "TestAlert")
        annotations = pairs(args.annotation, "annotation")
        payload = webhook([(labels, annotations)], status=args.status)
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = args.url or f"http://{host}:{settings.port}/alerts"
    token = args.token
    if token is None:
        secret = SecretStore(settings.secrets_dir).get("webhook-token")
        token = secret.reveal() if secret else None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.post(url, json=payload, headers=headers, timeout=15)
    except httpx.HTTPError as exc:
        print(f"alert-router: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    print(f"{response.status_code} {response.text}")
    return 0 if response.status_code == 200 else 1


# -- test --------------------------------------------------------------------------------


def _test(args: argparse.Namespace) -> int:
    from receiver.routing.ruletest import RuleTestError, run_rule_tests

    settings = settings_from(args)
    rules = load_or_explain(settings)
    if rules is None:
        return 2
    try:
        report = run_rule_tests(args.file, rules)
    except RuleTestError as exc:
        print(f"alert-router: {exc}", file=sys.stderr)
        return 2
    print(report.render())
    return 0 if report.passed else 1


# -- demo --------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    try:
        from receiver.demo.run import run_demo
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("receiver.demo"):
            raise
        # The container image leaves the demo out (see the Dockerfile).
        print(
            "alert-router demo: not part of this installation; run it from a clone of the "
            "repository (make demo)",
            file=sys.stderr,
        )
        return 2

    return asyncio.run(run_demo(serve=args.serve))


# -- dead letters ------------------------------------------------------------------------


def _dead_letters(args: argparse.Namespace) -> int:
    return asyncio.run(_dead_letters_async(args))


async def _dead_letters_async(args: argparse.Namespace) -> int:
    from receiver.store import open_store

    settings = Settings()
    # `list` only looks: beside a running router it must change no lease and take no lock.
    store = open_store(
        settings.state, busy_timeout=settings.sqlite_busy_timeout, read_only=args.action == "list"
    )
    await store.open()
    try:
        if args.action == "list":
            letters = await store.dead_letters()
            if not letters:
                print("no dead letters")
            for d in letters:
                when = datetime.fromtimestamp(d.failed_at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
                print(
                    f"{d.id}\t{when}\t{d.destination}\t{d.alertname}\t{d.status}\t"
                    f"attempts={d.attempts}\t{d.error}"
                )
            return 0
        if not args.all and not args.ids:
            print("alert-router: name dead-letter IDs or pass --all", file=sys.stderr)
            return 2
        by_id = {d.id: d for d in await store.dead_letters()}
        chosen = list(by_id) if args.all else [i for i in args.ids if i in by_id]
        now = time.time()
        count = await store.replay_dead_letters(None if args.all else args.ids, now)
        # The alerts' histories say who queued them again (a report's has none).
        await store.record_history([], replayed_events(by_id, chosen, now, by="cli"))
        print(f"{count} dead letter(s) queued for delivery again")
        return 0
    finally:
        await store.close()


_COMMANDS = {
    "serve": _serve,
    "check": _check,
    "route": _route,
    "send": _send,
    "test": _test,
    "report": report.run,
    "explain": explain.run,
    "demo": _demo,
    "dead-letters": _dead_letters,
}
