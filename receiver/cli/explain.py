"""`alert-router explain FINGERPRINT | label=value...`: what happened to an alert, and why.

Prints, from the store, each kept episode of the alert (newest first) with its timeline:
the webhooks that carried it, its cost context, the route and why it matched, each
destination's dedup decision with its reason, every delivery try, the reference of what
was delivered, dead letters and replays, presses in Slack, and the resolve with what the
episode cost. The same lines as the web page's timeline (`receiver.history.timeline`).
It only reads: the store is opened read-only, beside a running router.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from receiver.cli.common import pairs
from receiver.config.durations import format_elapsed
from receiver.config.settings import Settings
from receiver.events import Timeline
from receiver.history.query import find_episodes
from receiver.history.summary import EpisodeSummary, summarize
from receiver.history.timeline import describe
from receiver.matchers import Matcher, MatchType
from receiver.store.base import Store

HELP = "print what happened to an alert, and why, from the router's history"
DESCRIPTION = (
    "Print the history of one alert: by its fingerprint (as in Alertmanager, the web page "
    "and the logs), or by labels (name=value...), which prints the alert that matches them "
    "and changed last. Each episode, newest first, with its timeline: received, cost "
    "context, route, dedup decisions, delivery tries, delivered, dead letters, Slack "
    "presses, resolved. Reads the store only (ALERT_ROUTER_STATE)."
)
# Alertmanager's fingerprints are 16 hex digits; Grafana's are too.
_FINGERPRINT = re.compile(r"^[0-9a-f]{1,32}$")
# Episodes looked through to find an alert by labels.
_SEARCH = 1000


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    explain = sub.add_parser("explain", help=HELP, description=DESCRIPTION)
    explain.add_argument(
        "alert",
        nargs="+",
        metavar="FINGERPRINT | label=value",
        help="the alert's fingerprint, or labels it has",
    )
    explain.add_argument(
        "--episodes", type=int, default=5, metavar="N", help="at most N episodes (default 5)"
    )


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_explain(args, Settings()))


async def _explain(args: argparse.Namespace, settings: Settings) -> int:
    from receiver.store import open_store

    wanted: Sequence[str] = args.alert
    fingerprint = wanted[0] if len(wanted) == 1 and _FINGERPRINT.match(wanted[0]) else None
    labels = {} if fingerprint is not None else pairs(wanted, "label")
    store = open_store(settings.state, busy_timeout=settings.sqlite_busy_timeout, read_only=True)
    await store.open()
    try:
        if fingerprint is None:
            fingerprint = await _find(store, labels, settings)
            if fingerprint is None:
                shown = " ".join(f"{k}={v}" for k, v in labels.items())
                print(f"alert-router: no alert with {shown} in the history", file=sys.stderr)
                return 1
        timelines = await store.alert_timelines(fingerprint)
    finally:
        await store.close()
    if not timelines:
        print(f"alert-router: no alert {fingerprint} in the history", file=sys.stderr)
        return 1
    print(render(timelines[: max(args.episodes, 1)], now=time.time()))
    return 0


async def _find(store: Store, labels: dict[str, str], settings: Settings) -> str | None:
    matchers = [Matcher(name, MatchType.EQUAL, value) for name, value in labels.items()]
    since = time.time() - settings.history_retention
    found = await find_episodes(store, matchers=matchers, since=since, limit=_SEARCH)
    return found[0].meta.fingerprint if found else None


def render(timelines: Sequence[Timeline], *, now: float) -> str:
    """The episodes of one alert, newest first, each with its timeline."""
    first = timelines[0].meta
    labels = ", ".join(f'{k}="{v}"' for k, v in sorted(first.labels.items()))
    out = [f"{first.alertname} {{{labels}}}", f"fingerprint {first.fingerprint}"]
    for timeline in timelines:
        out += ["", *_episode(summarize(timeline), timeline, now)]
    return "\n".join(out)


def _episode(summary: EpisodeSummary, timeline: Timeline, now: float) -> list[str]:
    meta = summary.meta
    ago = format_elapsed(now - meta.started_at)
    head = f"episode started {_time(meta.started_at)} ({ago} ago): "
    head += summary.status
    if summary.cost_per_hour is not None:
        head += f", ${summary.cost_per_hour:,.2f}/h"
    if summary.incident_cost is not None:
        head += f", cost ${summary.incident_cost:,.2f}"
    lines = [head]
    for outcome in summary.outcomes:
        detail = f" ({outcome.detail})" if outcome.detail else ""
        lines.append(f"  {outcome.destination}: {outcome.state}{detail}")
    lines += [f"  {_clock(e.at)}  {describe(e)}" for e in timeline.events]
    return lines


def _time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%m-%d %H:%M:%S.%f")[:-3] + "Z"
