"""Keeps the rules current: reload when the file changes and on SIGHUP.

Kubernetes updates a mounted ConfigMap by swapping a symlink, so the watcher compares
the identity of the resolved file, not only its mtime. An invalid new file is refused
and the rules in force keep serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from receiver.config.rules import Rules, RulesError, load_rules, parse_rules
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


def _read(path: Path) -> tuple[Rules, str]:
    """The rules in `path` and the sha256 of the very bytes they were parsed from."""
    try:
        raw = path.read_bytes()
    except OSError:
        # load_rules names the problem as `check` does.
        return load_rules(path), ""
    return parse_rules(raw.decode("utf-8"), path), hashlib.sha256(raw).hexdigest()


class RulesHolder:
    """The rules in force, replaced only by a rules file that validates whole.

    For the status page it keeps what is in force (`checksum`: the sha256 of the file's
    bytes, `loaded_at`: when, Unix time) and the problems of the latest refused load
    (`last_error`, `last_error_at`), cleared by the next load that succeeds.
    """

    def __init__(
        self,
        path: Path,
        metrics: Metrics,
        *,
        validate: Validator | None = None,
        on_change: Callable[[Rules], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._metrics = metrics
        self._validate = validate
        self.on_change = on_change
        self._clock = clock
        self.checksum: str | None = None
        self.loaded_at: float | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
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
            rules, checksum = _read(self.path)
            problems = self._validate(rules) if self._validate else []
            if problems:
                raise RulesError(self.path, problems)
        except RulesError as exc:
            self._identity = identity
            self.last_error = "\n".join(exc.problems)
            self.last_error_at = self._clock()
            self._metrics.config_reloads.labels("failure").inc()
            self._metrics.config_last_reload_ok.set(0)
            raise
        self._identity = identity
        self._rules = rules
        self.checksum = checksum
        self.loaded_at = self._clock()
        self.last_error = self.last_error_at = None
        self._metrics.config_reloads.labels("success").inc()
        self._metrics.config_last_reload_ok.set(1)
        self._metrics.config_last_reload_time.set(self.loaded_at)
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
