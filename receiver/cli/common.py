"""What every `alert-router` command shares: the --config flag, settings, loading the rules."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from receiver.config.rules import Rules, RulesError, load_rules
from receiver.config.settings import Settings


def config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="rules file (ALERT_ROUTER_CONFIG)")


def settings_from(args: argparse.Namespace) -> Settings:
    """The environment's settings with the command's flags over them."""
    settings = Settings()
    updates: dict[str, Any] = {}
    if getattr(args, "config", None):
        updates["config"] = args.config
    if getattr(args, "host", None):
        updates["host"] = args.host
    if getattr(args, "port", None):
        updates["port"] = args.port
    return settings.model_copy(update=updates)


def load_or_explain(settings: Settings) -> Rules | None:
    """The rules file, or None after printing every problem in it."""
    try:
        return load_rules(settings.config)
    except RulesError as exc:
        print(f"{settings.config}: invalid rules:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def pairs(items: Sequence[str], what: str) -> dict[str, str]:
    """`name=value` arguments as a mapping; exits naming the first malformed one."""
    found = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"alert-router: {what} {item!r} must be name=value")
        found[name] = value
    return found
