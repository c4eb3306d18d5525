"""The Acknowledge button: PagerDuty's `acknowledge` for the pressed alert's dedup_key.

It goes to every PagerDuty destination the ledger says was paged for the alert, and to
none it was not: acknowledging an alert PagerDuty never got (or that is closed) would
claim something that did not happen.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from receiver.config.rules import Rules
from receiver.config.schema import PagerDutySpec
from receiver.config.secrets import SecretStore
from receiver.models import Alert
from receiver.notify.base import NotifyError
from receiver.notify.pagerduty.notifier import PagerDutyNotifier, dedup_key
from receiver.notify.slack.buttons import ACKNOWLEDGE_ACTION, ACKNOWLEDGE_STATUS_BLOCK_ID
from receiver.notify.slack.text import escape, slack_date
from receiver.slack_actions.payload import Press
from receiver.slack_actions.respond import Failed, Responder
from receiver.store.base import Store, StoreError

# Slack: the request must be answered within 3 seconds; PagerDuty gets this much of it.
PAGERDUTY_TIMEOUT = 2.0


class Acknowledger:
    """Acts on an Acknowledge press; returns the outcome and what to log about it."""

    def __init__(
        self,
        *,
        rules: Callable[[], Rules],
        store: Store,
        secrets: SecretStore,
        events_url: str,
        clock: Callable[[], float],
        responder: Responder,
    ) -> None:
        self._rules = rules
        self._store = store
        self._secrets = secrets
        self._events_url = events_url
        self._clock = clock
        self._responder = responder

    async def __call__(self, press: Press) -> tuple[str, dict[str, Any]]:
        """Failed when no destination took the acknowledge."""
        value = press.value
        paged, problems = await self._paged(press)
        alert = Alert(
            fingerprint=value.fingerprint,
            status="firing",
            labels=dict(value.labels or {"alertname": value.alertname}),
            annotations={},
            starts_at=value.starts_at,
        )
        done: list[str] = []
        for name, pagerduty in paged:
            notifier = PagerDutyNotifier(
                name,
                self._secrets.source(pagerduty.routing_key.secret),
                events_url=self._events_url,
                timeout=PAGERDUTY_TIMEOUT,
            )
            try:
                await notifier.acknowledge(alert)
            except NotifyError as exc:
                problems.append(f"{name}: {exc}")
            else:
                done.append(name)
            finally:
                await notifier.aclose()
        if not done:
            raise Failed("Nothing acknowledged: " + "; ".join(problems) + ".")
        where = ", ".join(escape(name) for name in done)
        now = datetime.fromtimestamp(self._clock(), UTC)
        line = (
            f":raising_hand: *Acknowledged* in PagerDuty ({where}) by {press.who} {slack_date(now)}"
        )
        # The button goes once every destination took the acknowledge.
        remove = (ACKNOWLEDGE_ACTION,) if not problems else ()
        respond = self._responder
        async with respond.lock(press):
            edited = await respond.edit(press, ACKNOWLEDGE_STATUS_BLOCK_ID, line, remove)
        if problems:
            await respond.tell(
                press, f":warning: Acknowledged in {where}, but not: " + "; ".join(problems) + "."
            )
        if edited is not None:
            await respond.tell(press, f"Acknowledged in {where}, but {edited}")
        return "success", {"pagerduty": done, "problems": problems, "dedup_key": dedup_key(alert)}

    async def _paged(self, press: Press) -> tuple[list[tuple[str, PagerDutySpec]], list[str]]:
        """The destinations to acknowledge in, and why the others are left out."""
        rules = self._rules()
        value = press.value
        paged: list[tuple[str, PagerDutySpec]] = []
        problems: list[str] = []
        for name in value.pagerduty:
            spec = rules.destinations.get(name)
            if spec is None or spec.pagerduty is None:
                problems.append(f"PagerDuty destination {name} is no longer in the rules")
                continue
            try:
                entry = await self._store.ledger_entry(name, value.episode)
            except StoreError as exc:
                raise Failed(f"Nothing acknowledged: the router's store failed ({exc}).") from None
            if entry is None or entry.firing_at is None:
                problems.append(f"{name} has not been paged for this alert (yet)")
            elif entry.resolved_at is not None:
                problems.append(f"the alert is already resolved in {name}")
            else:
                paged.append((name, spec.pagerduty))
        if not value.pagerduty:
            problems.append("the button names no PagerDuty destination")
        return paged, problems
