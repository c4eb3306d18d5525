"""Keeps the rules current: reload when the file changes and on SIGHUP.

Kubernetes updates a mounted ConfigMap by swapping a symlink, so the watcher compares
the identity of the resolved file, not only its mtime. An invalid new file is refused
and the rules in force keep serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from receiver.config.rules import Rules, RulesError, load_rules
from receiver.config.schema import GrafanaHmacSpec
from receiver.metrics import Metrics

log = logging.getLogger("alert_router.config")

Validator = Callable[[Rules], list[str]]


def _identity(path: Path) -> tuple[str, int, int, int] | None:
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError:
        return None
    return (real, st.st_ino, st.st_mtime_ns, st.st_size)


class RulesHolder:
    """The rules in force, replaced only by a rules file that validates whole."""

    def __init__(
        self,
        path: Path,
        metrics: Metrics,
        *,
        validate: Validator | None = None,
        on_change: Callable[[Rules], None] | None = None,
    ) -> None:
        self.path = path
        self._metrics = metrics
        self._validate = validate
        self.on_change = on_change
        self._rules: Rules | None = None
        self._identity: tuple[str, int, int, int] | None = None
        self._task: asyncio.Task[None] | None = None
        self._hup = asyncio.Event()

    @property
    def rules(self) -> Rules:
        if self._rules is None:
            raise RuntimeError("rules are not loaded")
        return self._rules

    @property
    def loaded(self) -> bool:
        return self._rules is not None

    def grafana_hmac(self) -> GrafanaHmacSpec:
        """Where Grafana's signature is, per the rules in force (the defaults before the
        first load): ingest reads it at each webhook, so a reload applies at once."""
        if self._rules is None:
            return GrafanaHmacSpec()
        return self._rules.spec.grafana.hmac

    def load(self) -> Rules:
        """Load the file now; raise RulesError (and keep the old rules) when invalid."""
        identity = _identity(self.path)
        try:
            rules = load_rules(self.path)
            problems = self._validate(rules) if self._validate else []
            if problems:
                raise RulesError(self.path, problems)
        except RulesError:
            self._identity = identity
            self._metrics.config_reloads.labels("failure").inc()
            self._metrics.config_last_reload_ok.set(0)
            raise
        self._identity = identity
        self._rules = rules
        self._metrics.config_reloads.labels("success").inc()
        self._metrics.config_last_reload_ok.set(1)
        self._metrics.config_last_reload_time.set(time.time())
        return rules

    def reload(self, why: str) -> bool:
        try:
            rules = self.load()
        except RulesError as exc:
            log.error(
                "rules reload refused; the previous rules keep serving",
                extra={"file": str(self.path), "trigger": why, "problems": exc.problems},
            )
            return False
        log.info(
            "rules reloaded",
            extra={"file": str(self.path), "trigger": why, "routes": len(rules.routes)},
        )
        if self.on_change is not None:
            self.on_change(rules)
        return True

    def request_reload(self) -> None:
        """For SIGHUP."""
        self._hup.set()

    def changed(self) -> bool:
        return _identity(self.path) != self._identity

    async def watch(self, interval: float = 1.0) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hup.wait(), interval)
            if self._hup.is_set():
                self._hup.clear()
                self.reload("SIGHUP")
            elif self.changed():
                self.reload("file changed")
