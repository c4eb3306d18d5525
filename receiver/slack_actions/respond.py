"""After a press: the message edited to say who did what, the presser told of problems.

A failure is shown to the presser alone, as an ephemeral message through the press's
`response_url`, and the message claims nothing that did not happen. Edits go through a
bot notifier per destination, kept (one pooled connection each) until `aclose()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Sequence

import httpx

from receiver.config.rules import Rules
from receiver.config.secrets import SecretStore
from receiver.notify.base import NotifyError
from receiver.notify.slack.bot import SlackBotNotifier
from receiver.notify.slack.buttons import annotate
from receiver.slack_actions.payload import Press
from receiver.store.base import Store, StoreError

log = logging.getLogger("alert_router.slack_actions")

# Slack: the request must be answered within 3 seconds; each call to Slack gets this much.
SLACK_TIMEOUT = 2.0


class Failed(Exception):
    """An action that did not happen; the text is shown to the presser (no secrets)."""


class Responder:
    """Edits pressed messages and talks to the presser; one press per message at a time."""

    def __init__(
        self,
        *,
        secrets: SecretStore,
        store: Store,
        rules: Callable[[], Rules],
        slack_api_url: str,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._secrets = secrets
        self._store = store
        self._rules = rules
        self._slack_api_url = slack_api_url
        self._http = http
        self._editors: dict[tuple[str, str, str], SlackBotNotifier] = {}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def edit(
        self, press: Press, status_block: str, line: str, remove: Sequence[str]
    ) -> str | None:
        """Put `line` on the message; None when done, else why not (for the user)."""
        if press.message is None:
            return "the message could not be updated (Slack sent no message with the press)."
        value = press.value
        try:
            entry = await self._store.ledger_entry(value.destination, value.episode)
            resolved = (
                entry is not None and entry.resolved_at is not None
            ) or await self._store.resolve_queued(value.destination, value.episode)
        except StoreError as exc:
            log.warning("ledger unreadable; editing the message anyway", extra={"error": str(exc)})
            resolved = False
        if resolved:
            # The resolve edited the message, or is about to: it is queued or being sent
            # (the ledger has it only once Slack took all of it). Do not bring the firing
            # message back over it.
            return "the message was left as it is: the alert has resolved."
        editor = await self._editor(value.destination)
        if editor is None:
            return f"the message could not be updated: no bot destination {value.destination}."
        body = annotate(press.message, status_block=status_block, text=line, remove_actions=remove)
        try:
            await editor.edit(press.channel, press.ts, body)
        except NotifyError as exc:
            log.warning(
                "slack action done, but the message could not be updated",
                extra={**press.log_fields(), "error": str(exc)},
            )
            return f"the message could not be updated ({exc})."
        return None

    async def tell(self, press: Press, text: str) -> None:
        """An ephemeral message to the presser alone (Slack: response_url, 30 minutes)."""
        body = {"response_type": "ephemeral", "replace_original": False, "text": text}
        try:
            async with self.client() as http:
                response = await http.post(press.response_url, json=body, timeout=SLACK_TIMEOUT)
        except httpx.HTTPError as exc:
            log.warning(
                "cannot tell the user through response_url",
                extra={**press.log_fields(), "error": type(exc).__name__, "text": text},
            )
            return
        if not response.is_success:
            log.warning(
                "response_url refused the message",
                extra={**press.log_fields(), "status": response.status_code, "text": text},
            )

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[httpx.AsyncClient]:
        """The service's HTTP client, or one for this use alone."""
        if self._http is not None:
            yield self._http
            return
        async with httpx.AsyncClient() as client:
            yield client

    @contextlib.asynccontextmanager
    async def lock(self, press: Press) -> AsyncIterator[None]:
        """One press at a time per message and alert (a double click, a Slack retry)."""
        key = f"{press.channel}/{press.ts}/{press.value.fingerprint}"
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        async with lock:
            yield

    async def aclose(self) -> None:
        editors, self._editors = list(self._editors.values()), {}
        for editor in editors:
            await editor.aclose()

    async def _editor(self, destination: str) -> SlackBotNotifier | None:
        """The bot notifier that edits `destination`'s messages, as the rules now say (one
        the rules changed since is closed)."""
        spec = self._rules().destinations.get(destination)
        if spec is None or spec.slack is None or spec.slack.token is None:
            return None
        assert spec.slack.channel is not None  # rules validation guarantees it
        key = (destination, spec.slack.token.secret, spec.slack.channel)
        for stale in [k for k in self._editors if k[0] == destination and k != key]:
            await self._editors.pop(stale).aclose()
        editor = self._editors.get(key)
        if editor is None:
            editor = SlackBotNotifier(
                destination,
                self._secrets.source(spec.slack.token.secret),
                spec.slack.channel,
                api_url=self._slack_api_url,
                timeout=SLACK_TIMEOUT,
            )
            self._editors[key] = editor
        return editor
