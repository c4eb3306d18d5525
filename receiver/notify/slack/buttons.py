"""The buttons of bot messages and their wire format, shared with receiver.slack_actions.

A firing message of a bot destination can carry "Silence" and "Acknowledge" buttons. A
Grafana alert's "Silence" is a link button to Grafana's own silence page instead: the
Alertmanager silence flow is for Alertmanager's alerts only.
Each button's value says everything its press needs (`ActionValue`), so the endpoint
keeps no state of its own; block ids let a press find the buttons and the status lines
again in the message Slack sends along with it. `annotate` builds the edit that marks a
message after a press.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import ActionsBlock, ButtonElement, ContextBlock

from receiver.config.durations import format_duration
from receiver.config.rules import Rules
from receiver.models import SOURCES, Notification, episode_key, format_time
from receiver.notify import grafana
from receiver.notify.slack.text import MAX_BUTTON_URL, mrkdwn, plain, web_url
from receiver.routing.routes import condition_values, route_alert

MAX_BUTTON_VALUE = 2000  # Slack: button value max 2000 characters

ACTIONS_BLOCK_ID = "alert_router_actions"
SILENCE_STATUS_BLOCK_ID = "alert_router_silenced"
ACKNOWLEDGE_STATUS_BLOCK_ID = "alert_router_acknowledged"
SILENCE_ACTION = "silence_"  # + the duration in seconds: "silence_3600"
ACKNOWLEDGE_ACTION = "acknowledge"
# A link button (to Grafana's silence page): Slack still posts its press, which asks
# nothing of us.
GRAFANA_SILENCE_ACTION = "grafana_silence"
# The trailer of a Grafana alert's message: a press can tell the source from the message.
GRAFANA_BLOCK_ID = "alert_router_from_grafana"

_HEX_COLOR = re.compile(r"[0-9A-Fa-f]{6}")


def _nowhere(notification: Notification) -> Sequence[str]:
    return ()


@dataclass(frozen=True, slots=True)
class Buttons:
    """The buttons a bot destination's firing messages carry.

    `silences`: durations (seconds) of the "Silence" buttons, empty without an Alertmanager
    to create silences in. `pagerduty`: the PagerDuty destinations a notification's alert
    is routed to as well; an "Acknowledge" button when there is any. `silence_links`: a
    "Silence in Grafana" link button on Grafana alerts (their silenceURL).
    """

    silences: tuple[float, ...] = ()
    pagerduty: Callable[[Notification], Sequence[str]] = field(default=_nowhere)
    silence_links: bool = False


def slack_buttons(rules: Rules, destination: str) -> Buttons | None:
    """The buttons of a Slack destination's firing messages, or None for no buttons.

    Silence buttons need `alertmanager.url` in the rules. Acknowledge shows when the
    alert is routed to a PagerDuty destination as well: the rules are asked again with the
    notification's labels and cost context, which is what the pipeline routed it with.
    """
    spec = rules.destinations[destination].slack
    if spec is None or not spec.buttons_on:
        return None
    silences = spec.silence_buttons if rules.spec.alertmanager is not None else ()
    pagerduty = frozenset(n for n, d in rules.destinations.items() if d.pagerduty is not None)

    def routed_to_pagerduty(notification: Notification) -> Sequence[str]:
        if not pagerduty:
            return ()
        alert = notification.alert
        targets = route_alert(
            rules, alert.labels, condition_values(alert, notification.context.numbers())
        )
        return [t.destination for t in targets if t.destination in pagerduty]

    # Grafana alerts are silenced in Grafana, which needs no `alertmanager.url`.
    silence_links = bool(spec.silence_buttons)
    if not silences and not pagerduty and not silence_links:
        return None
    return Buttons(silences=silences, pagerduty=routed_to_pagerduty, silence_links=silence_links)


@dataclass(frozen=True, slots=True)
class ActionValue:
    """What a button's value carries: enough for receiver.slack_actions to act on a press
    without state of its own. Slack signs every press, so a verified press returns the
    value exactly as it was rendered here.

    `labels` is None when the labels do not fit Slack's 2000 characters; `digest` then
    identifies them, and the press looks the alert up in Alertmanager by fingerprint.
    `source` is where the alert came from (models.SOURCES): only Alertmanager's are
    silenced in Alertmanager.
    """

    destination: str
    fingerprint: str
    starts_at: datetime
    alertname: str = ""
    labels: Mapping[str, str] | None = None
    digest: str = ""
    external_url: str = ""
    pagerduty: tuple[str, ...] = ()
    source: str = "alertmanager"

    @property
    def episode(self) -> str:
        """The episode key of the ledger (Alert.episode)."""
        return episode_key(self.fingerprint, self.starts_at)

    def encode(self) -> str:
        data: dict[str, Any] = {
            "v": 1,
            "d": self.destination,
            "f": self.fingerprint,
            "s": format_time(self.starts_at),
            "h": self.digest,
        }
        if self.alertname:
            data["a"] = self.alertname
        if self.labels is not None:
            data["l"] = dict(self.labels)
        if self.external_url:
            data["x"] = self.external_url
        if self.pagerduty:
            data["p"] = list(self.pagerduty)
        if self.source != "alertmanager":
            data["o"] = self.source
        # Slack counts characters: non-ASCII stays as it is rather than six-character escapes.
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> ActionValue:
        """The value of a button; ValueError when it is not one rendered here."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("v") != 1:
            raise ValueError("not an alert-router button value")
        fields = {key: data.get(key, "") for key in ("d", "f", "s", "h", "a", "x")}
        if not all(isinstance(value, str) for value in fields.values()):
            raise ValueError("malformed button value")
        if not fields["d"] or not fields["f"]:
            raise ValueError("button value without destination or fingerprint")
        labels = data.get("l")
        if labels is not None and not (
            isinstance(labels, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
        ):
            raise ValueError("malformed labels in button value")
        pagerduty = data.get("p", [])
        if not isinstance(pagerduty, list) or not all(isinstance(p, str) for p in pagerduty):
            raise ValueError("malformed pagerduty destinations in button value")
        source = data.get("o", "alertmanager")
        if source not in SOURCES:
            raise ValueError("unknown source in button value")
        starts_at = datetime.fromisoformat(str(fields["s"]))
        if starts_at.tzinfo is None:
            raise ValueError("startsAt without a timezone in button value")
        return cls(
            destination=fields["d"],
            fingerprint=fields["f"],
            starts_at=starts_at,
            alertname=fields["a"],
            labels=labels,
            digest=fields["h"],
            external_url=fields["x"],
            pagerduty=tuple(pagerduty),
            source=source,
        )


def labels_digest(labels: Mapping[str, str]) -> str:
    """A short digest of a label set, to check labels found elsewhere are the alert's."""
    canonical = json.dumps(sorted(labels.items()), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _fitting_value(value: ActionValue) -> str | None:
    """The encoded value within Slack's 2000 characters, leaving out what a press can do
    without: first the labels (looked up in Alertmanager instead), then the links."""
    candidates = (
        value,
        replace(value, labels=None),
        replace(value, labels=None, external_url=""),
        replace(value, labels=None, external_url="", alertname=""),
    )
    for candidate in candidates:
        text = candidate.encode()
        if len(text) <= MAX_BUTTON_VALUE:
            return text
    return None


def actions_block(notification: Notification, buttons: Buttons) -> ActionsBlock | None:
    """The buttons of a firing message, or None when no button's value fits."""
    alert = notification.alert
    base = ActionValue(
        destination=notification.destination,
        fingerprint=alert.fingerprint,
        starts_at=alert.starts_at,
        alertname=alert.name,
        digest=labels_digest(alert.labels),
        source=alert.source,
    )
    elements: list[ButtonElement] = []
    if alert.grafana is not None:
        # Never the Alertmanager silence buttons: Alertmanager does not hold this alert.
        link = _grafana_silence(notification) if buttons.silence_links else None
        if link is not None:
            elements.append(link)
        silence = None
    else:
        silence = _fitting_value(
            replace(base, labels=dict(alert.labels), external_url=alert.external_url)
        )
    if silence is not None:
        for seconds in buttons.silences:
            elements.append(
                ButtonElement(
                    text=plain(f"Silence {format_duration(seconds)}"),
                    action_id=f"{SILENCE_ACTION}{seconds:g}",
                    value=silence,
                )
            )
    pagerduty = tuple(dict.fromkeys(buttons.pagerduty(notification)))
    acknowledge = _fitting_value(replace(base, pagerduty=pagerduty)) if pagerduty else None
    if acknowledge is not None:
        elements.append(
            ButtonElement(
                text=plain("Acknowledge"),
                action_id=ACKNOWLEDGE_ACTION,
                value=acknowledge,
                style="primary",
            )
        )
    if not elements:
        return None
    return ActionsBlock(block_id=ACTIONS_BLOCK_ID, elements=elements)


def _grafana_silence(notification: Notification) -> ButtonElement | None:
    """A link button to Grafana's silence page, when the URL is usable as a button's."""
    raw = grafana.silence_url(notification.alert)
    url = web_url(raw, MAX_BUTTON_URL) if raw is not None else None
    if url is None:
        return None
    return ButtonElement(
        text=plain("Silence in Grafana"), action_id=GRAFANA_SILENCE_ACTION, url=url
    )


def annotate(
    message: Mapping[str, Any],
    *,
    status_block: str,
    text: str,
    remove_actions: Collection[str] = (),
) -> dict[str, Any]:
    """The chat.update body for a message after a button press.

    `message` is the message as Slack sends it along with the press. The status line
    `status_block` is set to `text` (mrkdwn the caller has escaped), replacing an earlier
    one, and the buttons named in `remove_actions` are taken out.
    """
    blocks = [dict(b) for b in message.get("blocks") or [] if isinstance(b, Mapping)]
    attachments: list[dict[str, Any]] = []
    for raw in message.get("attachments") or []:
        if not isinstance(raw, Mapping):
            continue
        # Only what we send: Slack adds `id` and others to what it sends back.
        attachment = {k: raw[k] for k in ("color", "fallback", "blocks") if k in raw}
        color = attachment.get("color")
        if isinstance(color, str) and _HEX_COLOR.fullmatch(color):
            attachment["color"] = "#" + color  # Slack sends the colour back without '#'
        attachment["blocks"] = [
            dict(b) for b in attachment.get("blocks") or [] if isinstance(b, Mapping)
        ]
        attachments.append(attachment)
    lists = [a["blocks"] for a in attachments] + [blocks]
    home = next(
        (found for found in lists if any(b.get("block_id") == ACTIONS_BLOCK_ID for b in found)),
        attachments[-1]["blocks"] if attachments else blocks,
    )
    for index, block in enumerate(home):
        if block.get("block_id") == ACTIONS_BLOCK_ID:
            kept = [
                e
                for e in block.get("elements") or []
                if not (isinstance(e, Mapping) and e.get("action_id") in remove_actions)
            ]
            home[index] = {**block, "elements": kept}
    # An actions block with no button left is not allowed (Slack: 1 to 25 elements).
    home[:] = [b for b in home if b.get("block_id") != ACTIONS_BLOCK_ID or b["elements"]]
    status = ContextBlock(block_id=status_block, elements=[mrkdwn(text)]).to_dict()
    at = next((i for i, b in enumerate(home) if b.get("block_id") == status_block), None)
    if at is None:
        home.append(status)
    else:
        home[at] = status
    return {"text": str(message.get("text") or ""), "blocks": blocks, "attachments": attachments}
