"""The Silence button: an Alertmanager silence (API v2) for exactly the pressed alert.

The silence has an equality matcher for each of the alert's labels. One per message: a
second press, or a Slack retry, finds the silence by the marker in its comment and reuses
it (extending it when the new end is later). A Grafana alert is refused: Alertmanager does
not hold it (its messages link to Grafana's silence page instead, but an old or forged
message could still carry the button).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta

from receiver.alertmanager import AlertmanagerClient, AlertmanagerError
from receiver.config.durations import format_duration
from receiver.config.rules import Rules
from receiver.config.schema import AlertmanagerSpec
from receiver.models import format_time
from receiver.notify.slack.buttons import (
    GRAFANA_BLOCK_ID,
    SILENCE_STATUS_BLOCK_ID,
    ActionValue,
    labels_digest,
)
from receiver.notify.slack.text import mrkdwn_link, slack_date
from receiver.slack_actions.payload import Press
from receiver.slack_actions.respond import Failed, Responder

# A second press within this much of the first end is the same silence, not an extension.
SAME_SILENCE_GRACE = 60.0


class Silencer:
    """Acts on a Silence press; returns the outcome ("success", "already_done")."""

    def __init__(
        self, *, rules: Callable[[], Rules], clock: Callable[[], float], responder: Responder
    ) -> None:
        self._rules = rules
        self._clock = clock
        self._responder = responder

    async def __call__(self, press: Press) -> tuple[str, dict[str, str]]:
        """The outcome and what to log about it; Failed when nothing was silenced."""
        if from_grafana(press):
            raise Failed(
                "No silence: this alert comes from Grafana, and Alertmanager does not hold "
                "it. Silence it in Grafana (the Silence link on the message)."
            )
        spec = self._rules().spec.alertmanager
        if spec is None:
            raise Failed("No silence: the router's rules name no Alertmanager (alertmanager.url).")
        try:
            return await self._silence(press, spec)
        except AlertmanagerError as exc:
            raise Failed(f"No silence: {exc}.") from None

    async def _silence(self, press: Press, spec: AlertmanagerSpec) -> tuple[str, dict[str, str]]:
        value = press.value
        respond = self._responder
        async with respond.client() as http:
            am = AlertmanagerClient(http, spec.url, spec.timeout)
            labels = value.labels
            if labels is None:
                labels = await _labels_from(am, value)
            marker = f"[alert-router slack:{press.channel}/{press.ts}]"
            now = datetime.fromtimestamp(self._clock(), UTC)
            ends = now + timedelta(seconds=press.seconds)
            comment = (
                f"Silenced from Slack by {press.created_by} ({press.user_id}) for "
                f"{format_duration(press.seconds)}: {value.alertname or labels.get('alertname')}"
                f" {marker}"
            )
            async with respond.lock(press):
                existing = await am.find(labels, marker)
                grace = timedelta(seconds=SAME_SILENCE_GRACE)
                if existing is not None and existing.ends >= ends - grace:
                    outcome, silence = "already_done", existing
                elif existing is not None:
                    outcome = "success"
                    silence = await am.extend(existing, ends, press.created_by, comment)
                else:
                    outcome = "success"
                    silence = await am.create(labels, now, ends, press.created_by, comment)
                link_base = value.external_url or spec.url
                link = f"{link_base.rstrip('/')}/#/silences/{silence.id}"
                line = (
                    f":no_bell: *Silenced* by {press.who} until {slack_date(silence.ends)}"
                    f" · silence {mrkdwn_link(link, silence.id)}"
                )
                edited = await respond.edit(press, SILENCE_STATUS_BLOCK_ID, line, ())
        done = f"Silenced until {slack_date(silence.ends)}: silence {mrkdwn_link(link, silence.id)}"
        if outcome == "already_done" and press.retry == 0:
            await respond.tell(press, f"Already silenced from this message. {done}")
        if edited is not None:
            await respond.tell(press, f"{done}, but {edited}")
        return outcome, {"silence_id": silence.id, "until": format_time(silence.ends)}


def from_grafana(press: Press) -> bool:
    """Whether the pressed alert came from Grafana: its button says so, or its message
    carries the Grafana mark (receiver.notify.slack.render puts it on the trailer)."""
    if press.value.source == "grafana":
        return True
    return any(block.get("block_id") == GRAFANA_BLOCK_ID for block in _blocks(press.message))


def _blocks(message: Mapping[str, object] | None) -> Iterator[Mapping[str, object]]:
    if message is None:
        return
    lists = [message.get("blocks")]
    attachments = message.get("attachments")
    if isinstance(attachments, list):
        lists += [a.get("blocks") for a in attachments if isinstance(a, Mapping)]
    for blocks in lists:
        if isinstance(blocks, list):
            yield from (b for b in blocks if isinstance(b, Mapping))


async def _labels_from(am: AlertmanagerClient, value: ActionValue) -> Mapping[str, str]:
    """The labels of the pressed alert when they were too long to travel in the button:
    Alertmanager still holds a firing alert, and the digest says it is the same one."""
    labels = await am.alert_labels(value.fingerprint, value.alertname)
    if labels is not None and labels_digest(labels) == value.digest:
        return labels
    raise Failed(
        "No silence: Alertmanager no longer holds this alert, and its labels were too "
        "long to travel in the button. Silence it in Alertmanager."
    )
