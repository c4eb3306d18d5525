"""Slack: incoming webhooks and the Web API (bot token), Block Kit messages and digests.

A single notification is one Block Kit message; a batch of several is one digest
message that names every alert. Label and annotation text is escaped for mrkdwn and
truncated to Block Kit's limits, so no alert can mention `@channel` or break a message.
A bot destination's firing messages carry buttons (silence, acknowledge) whose presses
receiver.slack_actions handles; each button's value says what the press needs (`ActionValue`).
slack_sdk's own retries are off and its calls run in a thread: the pipeline owns retries.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import re
import urllib.parse
import urllib.request
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from http.client import HTTPException, InvalidURL
from typing import Any, cast
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.models.attachments import BlockAttachment
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.webhook import WebhookClient

from receiver.config.durations import format_duration
from receiver.config.secrets import MissingSecretError, Secret, SecretSource, redact
from receiver.context.units import format_context
from receiver.models import Alert, ContextValue, DedupReason, Notification, format_time
from receiver.notify.base import NotifyError, Ref

logger = logging.getLogger(__name__)

# Block Kit limits (docs.slack.dev/reference/block-kit/blocks).
MAX_BLOCKS = 50  # Slack: 50 blocks per message (top level and attachments together here)
MAX_SECTION_TEXT = 3000  # Slack: section text max 3000 characters
MAX_FIELDS = 10  # Slack: 10 fields per section
MAX_FIELD_TEXT = 2000  # Slack: 2000 characters per field text
MAX_HEADER_TEXT = 150  # Slack: header text max 150 characters
MAX_CONTEXT_ELEMENTS = 10  # Slack: 10 elements per context block
MAX_BUTTON_VALUE = 2000  # Slack: button value max 2000 characters
# Slack: top-level `text` is truncated past 40,000 characters and should stay under 4,000;
# with blocks present it is only the notification fallback.
MAX_FALLBACK_TEXT = 3000

# Our own budgets inside those limits.
_MAX_LINK_URL = 2000  # one link per line must leave room in a 3000-character section
_MAX_COST_FIELDS = 3 * MAX_FIELDS  # at most 3 field sections of cost context
_SILENCE_VALUE = 200  # longer label values become a prefix regex matcher in the silence link
_LABEL_VALUE = 300
_LABEL_NAME = 100

# A digest: one line per alert, LINES_PER_SECTION lines per section, SECTIONS sections.
# 10 lines x (250 + 1) characters = 2,510 <= 3000 (Slack: section text max 3000);
# 1 header + 10 sections + 1 context = 12 blocks <= 50 (Slack: 50 blocks per message),
# and the whole digest stays near 26,000 characters, under Slack's 40,000-character message limit.
_DIGEST_LINE = 250
_DIGEST_LINES_PER_SECTION = 10
_DIGEST_SECTIONS = 10
DIGEST_MAX = _DIGEST_LINES_PER_SECTION * _DIGEST_SECTIONS

_RED = "#D7263D"
_ORANGE = "#F29D38"
_GREEN = "#2EB67D"
_RED_SEVERITIES = frozenset({"critical", "error", "page", "high"})

# Web API `error` codes that mean "try again" (chat.postMessage / chat.update docs).
_RECOVERABLE_API_ERRORS = frozenset(
    {
        "ratelimited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "team_added_to_org",
    }
)
# chat.update answers meaning the original message is gone or can no longer be edited.
_MESSAGE_GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})

# The buttons (receiver.slack_actions handles their presses). Block ids let a press find the
# buttons and the status lines again in the message Slack sends along with it.
ACTIONS_BLOCK_ID = "alert_router_actions"
SILENCE_STATUS_BLOCK_ID = "alert_router_silenced"
ACKNOWLEDGE_STATUS_BLOCK_ID = "alert_router_acknowledged"
SILENCE_ACTION = "silence_"  # + the duration in seconds: "silence_3600"
ACKNOWLEDGE_ACTION = "acknowledge"

_MENTION_WORDS = re.compile(r"@(?=(?:here|channel|everyone)\b)", re.IGNORECASE)
_RE2_SPECIAL = frozenset("\\.+*?()|[]{}^$")
_URL_SAFE = "!#$%&'()*+,-./:;=?@[]~_"
_LINK_SEPARATOR = "  ·  "


class SlackWebhookNotifier:
    """Delivers to a Slack incoming webhook; a resolve is a new message."""

    def __init__(self, name: str, url: SecretSource, *, timeout: float = 10.0) -> None:
        self.name = name
        self._url = url
        self._timeout = timeout
        self._sdk_logger = _silent_logger(f"{__name__}.sdk.{name}")

    def __repr__(self) -> str:
        return f"SlackWebhookNotifier({self.name!r}, url={self._url!r})"

    @property
    def max_batch(self) -> int:
        return DIGEST_MAX

    def render(self, batch: Sequence[Notification]) -> list[dict[str, Any]]:
        if not batch:
            return []
        return [_render_batch(batch).body()]

    def close(self) -> None:
        """Nothing to release: slack_sdk opens a connection per request."""

    async def notify(self, batch: Sequence[Notification]) -> Sequence[Ref | None]:
        _check_batch(batch, self.max_batch)
        if not batch:
            return []
        body = _render_batch(batch).body()
        await asyncio.to_thread(self._send, body)
        return [None] * len(batch)

    def _send(self, body: dict[str, Any]) -> None:
        where = f"slack webhook {self.name}"
        secret = _resolve(self._url, where)
        url = secret.reveal()
        secrets = _url_secrets(secret)
        try:
            client = WebhookClient(
                url,
                timeout=cast(int, self._timeout),  # slack_sdk says int; urllib takes seconds
                retry_handlers=[],
                logger=self._sdk_logger,
            )
            client.proxy = _proxy_for(url)
            response = client.send_dict(body)
        except Exception as exc:
            raise _transport_error(where, exc, secrets) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        answer = _clip_plain(redact(str(response.body or "").strip(), *secrets), 200)
        message = f"{where}: HTTP {status} {answer}".rstrip()
        if status == 429:
            # Slack: 429 with Retry-After (seconds) when over 1 message per second per webhook.
            raise NotifyError(message, recoverable=True, retry_after=_retry_after(response.headers))
        if status >= 500 or status == 408:
            raise NotifyError(message, recoverable=True)
        # Slack: 400 invalid_payload/no_text/invalid_blocks, 403 action_prohibited,
        # 404 channel_not_found/no_service, 410 channel_is_archived: sending again cannot help.
        raise NotifyError(message, recoverable=False)


class SlackBotNotifier:
    """Delivers with a bot token to one channel; a resolve edits the original and replies."""

    def __init__(
        self,
        name: str,
        token: SecretSource,
        channel: str,
        *,
        api_url: str,
        timeout: float = 10.0,
        buttons: Buttons | None = None,
    ) -> None:
        """`buttons`: what firing messages of this destination offer (None: no buttons)."""
        self.name = name
        self.channel = channel
        self.buttons = buttons
        self._token = token
        self._api_url = api_url
        self._timeout = timeout
        self._sdk_logger = _silent_logger(f"{__name__}.sdk.{name}")

    def __repr__(self) -> str:
        return f"SlackBotNotifier({self.name!r}, token={self._token!r}, channel={self.channel!r})"

    @property
    def max_batch(self) -> int:
        return DIGEST_MAX

    def render(self, batch: Sequence[Notification]) -> list[dict[str, Any]]:
        if not batch:
            return []
        if len(batch) > 1:
            return [self._post_body(_render_batch(batch))]
        notification = batch[0]
        ref = _message_ref(notification)
        if ref is None:
            return [self._post_body(_render_batch(batch, self.buttons))]
        if ref.get("kind") == "digest":
            return [_reply_body(notification, ref, broadcast=True)]
        return [_update_body(notification, ref), _reply_body(notification, ref, broadcast=False)]

    def close(self) -> None:
        """Nothing to release: slack_sdk opens a connection per request."""

    async def notify(self, batch: Sequence[Notification]) -> Sequence[Ref | None]:
        _check_batch(batch, self.max_batch)
        if not batch:
            return []
        return await asyncio.to_thread(self._deliver, list(batch))

    def _deliver(self, batch: list[Notification]) -> list[Ref | None]:
        if len(batch) > 1:
            posted = self._post(self._post_body(_render_batch(batch)))
            # Each alert of a digest refers to the digest; a later resolve replies in its
            # thread rather than overwriting the other alerts listed there.
            digest: Ref = {**posted, "kind": "digest"}
            return [digest] * len(batch)
        notification = batch[0]
        ref = _message_ref(notification)
        if ref is None:
            return [self._post(self._post_body(_render_batch(batch, self.buttons)))]
        if ref.get("kind") == "digest":
            try:
                self._call("chat.postMessage", _reply_body(notification, ref, broadcast=True))
            except _ApiError as exc:
                if exc.code not in _MESSAGE_GONE | {"thread_not_found"}:
                    raise
                return [self._post(self._post_body(_render_batch(batch)))]
            return [ref]
        try:
            self._call("chat.update", _update_body(notification, ref))
        except _ApiError as exc:
            if exc.code not in _MESSAGE_GONE:
                raise
            logger.info(
                "slack %s: original message of %s cannot be edited (%s); posting the resolve",
                self.name,
                notification.alert.name,
                exc.code,
            )
            return [self._post(self._post_body(_render_batch(batch)))]
        self._call("chat.postMessage", _reply_body(notification, ref, broadcast=False))
        return [ref]

    async def edit(self, channel: str, ts: str, message: Mapping[str, Any]) -> None:
        """Replace a message this bot posted (chat.update) with `message` (text, blocks,
        attachments). Raises NotifyError when Slack refuses or cannot be reached."""
        body = {"channel": channel, "ts": ts, **message}
        await asyncio.to_thread(self._call, "chat.update", body)

    def _post_body(self, message: _Message) -> dict[str, Any]:
        return {"channel": self.channel, **message.body()}

    def _post(self, body: dict[str, Any]) -> Ref:
        response = self._call("chat.postMessage", body)
        channel, ts = response.get("channel"), response.get("ts")
        if not isinstance(channel, str) or not isinstance(ts, str):
            raise NotifyError(
                f"slack bot {self.name}: chat.postMessage answered without channel and ts",
                recoverable=False,
            )
        return {"channel": channel, "ts": ts}

    def _call(self, method: str, body: dict[str, Any]) -> Mapping[str, Any]:
        where = f"slack bot {self.name}: {method}"
        secret = _resolve(self._token, where)
        secrets = (secret,)
        try:
            client = WebClient(
                token=secret.reveal(),
                base_url=self._api_url,
                timeout=cast(int, self._timeout),  # slack_sdk says int; urllib takes seconds
                retry_handlers=[],
                logger=self._sdk_logger,
            )
            client.proxy = _proxy_for(self._api_url)
            if method == "chat.update":
                response = client.chat_update(**body)
            else:
                response = client.chat_postMessage(**body)
        except SlackApiError as exc:
            raise _api_error(where, exc, secrets) from None
        except Exception as exc:
            raise _transport_error(where, exc, secrets) from None
        data = response.data
        return data if isinstance(data, dict) else {}


class _ApiError(NotifyError):
    """A Web API answer `{"ok": false, "error": code}` or an HTTP error status."""

    def __init__(
        self, message: str, code: str, *, recoverable: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(message, recoverable=recoverable, retry_after=retry_after)
        self.code = code


# -- rendering ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Message:
    """A rendered message: fallback text, top-level blocks, one coloured attachment."""

    text: str
    blocks: list[Block]
    color: str
    attachment_blocks: list[Block]

    def body(self) -> dict[str, Any]:
        attachment = BlockAttachment(
            blocks=self.attachment_blocks, color=self.color, fallback=self.text
        )
        body: dict[str, Any] = {
            "text": self.text,
            "blocks": [block.to_dict() for block in self.blocks],
            "attachments": [attachment.to_dict()],
            # Graph and runbook links would otherwise unfurl into large previews.
            "unfurl_links": False,
            "unfurl_media": False,
        }
        return body


def _render_batch(batch: Sequence[Notification], buttons: Buttons | None = None) -> _Message:
    if len(batch) == 1:
        return _alert_message(batch[0], buttons)
    return _digest_message(batch)


def _alert_message(notification: Notification, buttons: Buttons | None = None) -> _Message:
    alert = notification.alert
    status = "FIRING" if alert.firing else "RESOLVED"
    summary = alert.annotations.get("summary", "")
    description = alert.annotations.get("description", "")

    header = _plain(_fit(f"{_icon(alert)} {status}: {alert.name}", MAX_HEADER_TEXT))
    blocks: list[Block] = [HeaderBlock(text=header)]
    body: list[Block] = []
    if summary or description:
        head = f"*{_fit(summary, 500)}*" if summary else ""
        room = MAX_SECTION_TEXT - len(head) - 1
        text = "\n".join(part for part in (head, _fit(description, room)) if part)
        body.append(SectionBlock(text=_mrkdwn(text)))
    body.extend(_cost_blocks(notification))
    labels = _labels_text(alert)
    if labels:
        body.append(SectionBlock(text=_mrkdwn(labels)))
    body.extend(_link_blocks(alert))
    body.append(ContextBlock(elements=_trailer(notification)))
    if buttons is not None and alert.firing:
        actions = _actions_block(notification, buttons)
        if actions is not None:
            body.append(actions)

    fallback = f"[{status}] {alert.name}" + (f": {summary}" if summary else "")
    return _Message(
        text=_fit(fallback, MAX_FALLBACK_TEXT),
        blocks=blocks,
        color=_color(alert),
        attachment_blocks=body,
    )


def _digest_message(batch: Sequence[Notification]) -> _Message:
    firing = sum(1 for n in batch if n.alert.firing)
    resolved = len(batch) - firing
    title = f"{len(batch)} alerts: {firing} firing, {resolved} resolved"
    lines = [_digest_line(n) for n in batch]
    body: list[Block] = [
        SectionBlock(text=_mrkdwn("\n".join(lines[i : i + _DIGEST_LINES_PER_SECTION])))
        for i in range(0, len(lines), _DIGEST_LINES_PER_SECTION)
    ]
    note = "One digest instead of separate messages (Slack: 1 message per second per channel)."
    elements = [_mrkdwn(note)]
    alertmanager = _safe_url(batch[0].alert.external_url)
    if alertmanager is not None:
        elements.append(_mrkdwn(f"<{alertmanager}|Alertmanager>"))
    body.append(ContextBlock(elements=elements))
    if any(n.alert.firing and _is_red(n.alert) for n in batch):
        color = _RED
    else:
        color = _ORANGE if firing else _GREEN
    names = ", ".join(dict.fromkeys(n.alert.name for n in batch))
    return _Message(
        text=_fit(f"[DIGEST] {title}: {names}", MAX_FALLBACK_TEXT),
        blocks=[HeaderBlock(text=_plain(title))],
        color=color,
        attachment_blocks=body,
    )


def _digest_line(notification: Notification) -> str:
    alert = notification.alert
    status = "FIRING" if alert.firing else "RESOLVED"
    head = f"{_icon(alert)} *{status}* {_fit(alert.name, 80)}"
    cost = ""
    if notification.context.values:
        first = notification.context.values[0]
        cost = f" · {_fit(_title(first), 40)}: {_fit(format_context(first), 40)}"
    detail = alert.annotations.get("summary") or ", ".join(
        f"{k}={v}" for k, v in sorted(alert.labels.items()) if k != "alertname"
    )
    room = _DIGEST_LINE - len(head) - len(cost) - 3
    return f"{head} — {_fit(detail, max(room, 2))}{cost}"


def _cost_blocks(notification: Notification) -> list[Block]:
    context = notification.context
    fields = [
        _mrkdwn(f"*{_fit(_title(item), 200)}*\n{_fit(format_context(item), 200)}")
        for item in context.values[:_MAX_COST_FIELDS]
    ]
    blocks: list[Block] = [
        SectionBlock(fields=fields[i : i + MAX_FIELDS]) for i in range(0, len(fields), MAX_FIELDS)
    ]
    if context.unavailable:
        reasons = "; ".join(f"{name} ({reason})" for name, reason in context.unavailable)
        text = "cost context unavailable: " + _fit(reasons, MAX_SECTION_TEXT - 40)
        blocks.append(ContextBlock(elements=[_mrkdwn(text)]))
    return blocks


def _labels_text(alert: Alert) -> str:
    items = [(k, v) for k, v in sorted(alert.labels.items()) if k != "alertname"]
    if not items:
        return ""
    text = "*Labels*"
    for index, (key, value) in enumerate(items):
        line = f"\n• *{_fit(key, _LABEL_NAME)}*: {_fit(value, _LABEL_VALUE)}"
        more = f"\n… and {len(items) - index} more"
        if len(text) + len(line) + len(more) > MAX_SECTION_TEXT:
            return text + more
        text += line
    return text


def _link_blocks(alert: Alert) -> list[Block]:
    links: list[str] = []
    candidates = (
        ("Graph", alert.generator_url),
        ("Runbook", alert.annotations.get("runbook_url", "")),
        ("Dashboard", alert.annotations.get("dashboard_url", "")),
    )
    for label, raw in candidates:
        url = _safe_url(raw)
        if url is not None:
            links.append(f"<{url}|{label}>")
    silence = _silence_url(alert)
    if silence is not None:
        links.append(f"<{silence}|Silence>")
    # Pack the links into as few sections as Slack's 3000 characters a section allow.
    sections: list[str] = []
    for link in links:
        if sections and len(sections[-1]) + len(_LINK_SEPARATOR) + len(link) <= MAX_SECTION_TEXT:
            sections[-1] += _LINK_SEPARATOR + link
        else:
            sections.append(link)
    return [SectionBlock(text=_mrkdwn(text)) for text in sections]


def _trailer(notification: Notification) -> list[MarkdownTextObject]:
    alert = notification.alert
    parts = [_mrkdwn(f"Started {slack_date(alert.starts_at)}")]
    if not alert.firing and alert.ends_at is not None:
        lasted = _duration((alert.ends_at - alert.starts_at).total_seconds())
        parts.append(_mrkdwn(f"Resolved {slack_date(alert.ends_at)} after {lasted}"))
    if notification.reason is DedupReason.REPEAT:
        parts.append(_mrkdwn("still firing: repeat notification"))
    if notification.route:
        parts.append(_mrkdwn(f"route: {_fit(notification.route, 200)}"))
    return parts[:MAX_CONTEXT_ELEMENTS]


def _update_body(notification: Notification, ref: Ref) -> dict[str, Any]:
    body = _alert_message(notification).body()
    # chat.update takes no unfurl options: an edit keeps the message's unfurl settings.
    body.pop("unfurl_links")
    body.pop("unfurl_media")
    return {"channel": ref["channel"], "ts": ref["ts"], **body}


def _reply_body(notification: Notification, ref: Ref, *, broadcast: bool) -> dict[str, Any]:
    alert = notification.alert
    summary = alert.annotations.get("summary", "")
    when = slack_date(alert.ends_at) if alert.ends_at is not None else "now"
    head = f"{_icon(alert)} *Resolved* {when}: {_fit(alert.name, 150)}"
    text = head + (f" — {_fit(summary, MAX_SECTION_TEXT - len(head) - 3)}" if summary else "")
    blocks: list[Block] = [SectionBlock(text=_mrkdwn(text)), *_cost_blocks(notification)]
    fallback = f"[RESOLVED] {alert.name}" + (f": {summary}" if summary else "")
    body: dict[str, Any] = {
        "channel": ref["channel"],
        "thread_ts": ref["ts"],
        "text": _fit(fallback, MAX_FALLBACK_TEXT),
        "blocks": [block.to_dict() for block in blocks],
        "unfurl_links": False,
        "unfurl_media": False,
    }
    if broadcast:
        body["reply_broadcast"] = True
    return body


def _message_ref(notification: Notification) -> Ref | None:
    """The original message a resolve should edit, if there is one."""
    ref = notification.ref
    if notification.alert.firing or not ref or not ref.get("channel") or not ref.get("ts"):
        return None
    return ref


# -- buttons -----------------------------------------------------------------------------


def _nowhere(notification: Notification) -> Sequence[str]:
    return ()


@dataclass(frozen=True, slots=True)
class Buttons:
    """The buttons a bot destination's firing messages carry.

    `silences`: durations (seconds) of the "Silence" buttons, empty without an Alertmanager
    to create silences in. `pagerduty`: the PagerDuty destinations a notification's alert
    is routed to as well; an "Acknowledge" button when there is any.
    """

    silences: tuple[float, ...] = ()
    pagerduty: Callable[[Notification], Sequence[str]] = field(default=_nowhere)


@dataclass(frozen=True, slots=True)
class ActionValue:
    """What a button's value carries: enough for receiver.slack_actions.endpoint to act on a press
    without state of its own. Slack signs every press, so a verified press returns the
    value exactly as it was rendered here.

    `labels` is None when the labels do not fit Slack's 2000 characters; `digest` then
    identifies them, and the press looks the alert up in Alertmanager by fingerprint.
    """

    destination: str
    fingerprint: str
    starts_at: datetime
    alertname: str = ""
    labels: Mapping[str, str] | None = None
    digest: str = ""
    external_url: str = ""
    pagerduty: tuple[str, ...] = ()

    @property
    def episode(self) -> str:
        """The episode key of the ledger (Alert.episode)."""
        return f"{self.fingerprint}@{format_time(self.starts_at)}"

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


def _actions_block(notification: Notification, buttons: Buttons) -> ActionsBlock | None:
    alert = notification.alert
    base = ActionValue(
        destination=notification.destination,
        fingerprint=alert.fingerprint,
        starts_at=alert.starts_at,
        alertname=alert.name,
        digest=labels_digest(alert.labels),
    )
    elements: list[ButtonElement] = []
    silence = _fitting_value(
        replace(base, labels=dict(alert.labels), external_url=alert.external_url)
    )
    if silence is not None:
        for seconds in buttons.silences:
            elements.append(
                ButtonElement(
                    text=_plain(f"Silence {format_duration(seconds)}"),
                    action_id=f"{SILENCE_ACTION}{seconds:g}",
                    value=silence,
                )
            )
    pagerduty = tuple(dict.fromkeys(buttons.pagerduty(notification)))
    acknowledge = _fitting_value(replace(base, pagerduty=pagerduty)) if pagerduty else None
    if acknowledge is not None:
        elements.append(
            ButtonElement(
                text=_plain("Acknowledge"),
                action_id=ACKNOWLEDGE_ACTION,
                value=acknowledge,
                style="primary",
            )
        )
    if not elements:
        return None
    return ActionsBlock(block_id=ACTIONS_BLOCK_ID, elements=elements)


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
        if isinstance(color, str) and re.fullmatch(r"[0-9A-Fa-f]{6}", color):
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
    status = ContextBlock(block_id=status_block, elements=[_mrkdwn(text)]).to_dict()
    at = next((i for i, b in enumerate(home) if b.get("block_id") == status_block), None)
    if at is None:
        home.append(status)
    else:
        home[at] = status
    return {"text": str(message.get("text") or ""), "blocks": blocks, "attachments": attachments}


# -- text --------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Escape text for Slack mrkdwn (`&`, `<`, `>`) and defuse `@here`-style words."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MENTION_WORDS.sub("@\u2060", text)


def _fit(text: str, limit: int) -> str:
    """`text` escaped, cut to `limit` characters with an ellipsis, never inside an entity."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: max(limit - 1, 0)]
    amp = cut.rfind("&", max(len(cut) - 4, 0))  # "&amp;" is the longest entity: 5 characters
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _clip_plain(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mrkdwn(text: str) -> MarkdownTextObject:
    # verbatim: Slack does not auto-link channel names, mentions or bare URLs in our text.
    return MarkdownTextObject(text=text, verbatim=True)


def _plain(text: str) -> PlainTextObject:
    return PlainTextObject(text=text, emoji=True)


def _title(item: ContextValue) -> str:
    return item.title or item.name


def _is_red(alert: Alert) -> bool:
    return alert.labels.get("severity", "").lower() in _RED_SEVERITIES


def _color(alert: Alert) -> str:
    if not alert.firing:
        return _GREEN
    return _RED if _is_red(alert) else _ORANGE


def _icon(alert: Alert) -> str:
    if not alert.firing:
        return ":large_green_circle:"
    return ":red_circle:" if _is_red(alert) else ":large_orange_circle:"


def slack_date(value: datetime) -> str:
    """Slack's date token: shown in the reader's time zone, with a UTC fallback."""
    return f"<!date^{int(value.timestamp())}^{{date_short_pretty}} {{time}}|{format_time(value)}>"


def _duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


# -- links -------------------------------------------------------------------------------


def mrkdwn_link(url: str, label: str) -> str:
    """`<url|label>` with the label escaped; the label alone if the URL is unusable."""
    safe = _safe_url(url)
    text = _fit(label, 200)
    return f"<{safe}|{text}>" if safe is not None else text


def _safe_url(raw: str) -> str | None:
    """An http(s) URL made safe inside `<url|label>`, or None if unusable or too long."""
    if not raw.startswith(("http://", "https://")):
        return None
    url = urllib.parse.quote(raw, safe=_URL_SAFE).replace("&", "&amp;")
    return url if len(url) <= _MAX_LINK_URL else None


def silence_url(alert: Alert) -> str | None:
    """Alertmanager's new-silence form prefilled with the alert's labels as matchers."""
    base = alert.external_url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        return None
    matchers = ",".join(_silence_matcher(k, v) for k, v in sorted(alert.labels.items()))
    return f"{base}/#/silences/new?filter=" + urllib.parse.quote("{" + matchers + "}", safe="")


def _silence_url(alert: Alert) -> str | None:
    url = silence_url(alert)
    if url is None:
        return None
    # Too many labels for one link: the empty form is better than a broader filter.
    return _safe_url(url) or _safe_url(alert.external_url.rstrip("/") + "/#/silences/new")


def _silence_matcher(name: str, value: str) -> str:
    if len(value) > _SILENCE_VALUE:
        prefix = "".join("\\" + c if c in _RE2_SPECIAL else c for c in value[:_SILENCE_VALUE])
        return f'{name}=~"{_quote_matcher(prefix + ".*")}"'
    return f'{name}="{_quote_matcher(value)}"'


def _quote_matcher(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# -- transport and errors ----------------------------------------------------------------


def _check_batch(batch: Sequence[Notification], max_batch: int) -> None:
    if len(batch) > max_batch:
        raise ValueError(f"batch of {len(batch)} exceeds max_batch {max_batch}")


def _resolve(source: SecretSource, where: str) -> Secret:
    try:
        return source()
    except MissingSecretError as exc:
        # A rotation in progress can briefly remove the file: try again later.
        raise NotifyError(f"{where}: {exc}", recoverable=True) from None


def _url_secrets(secret: Secret) -> tuple[Secret, ...]:
    """The URL and its path: a webhook's path alone is enough to post to it."""
    path = urllib.parse.urlsplit(secret.reveal()).path
    return (secret, Secret(path)) if len(path) > 1 else (secret,)


def _silent_logger(name: str) -> logging.Logger:
    """A logger for slack_sdk that records nothing: it logs request URLs at debug level."""
    quiet = logging.Logger(name, level=logging.CRITICAL + 1)
    quiet.propagate = False
    quiet.addHandler(logging.NullHandler())
    return quiet


def _proxy_for(url: str) -> str | None:
    """The environment's proxy for `url`, honouring NO_PROXY (slack_sdk ignores it)."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return None
    return _proxy_for_host(parts.scheme, parts.hostname)


@functools.lru_cache(maxsize=64)
def _proxy_for_host(scheme: str, hostname: str) -> str | None:
    """Looked up once per host: reading the proxy variables walks the whole environment,
    which cost more than rendering the message."""
    if urllib.request.proxy_bypass(hostname):
        return None
    proxy: str | None = urllib.request.getproxies().get(scheme)
    return proxy or None


def _retry_after(headers: Mapping[str, Any] | None) -> float | None:
    """Slack's Retry-After header, in seconds."""
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) and value else value
            try:
                return max(float(str(raw)), 0.0)
            except ValueError:
                return None
    return None


def _api_error(where: str, exc: SlackApiError, secrets: Sequence[Secret]) -> _ApiError:
    response = exc.response
    status = int(getattr(response, "status_code", 0) or 0)
    data = getattr(response, "data", None)
    code = data.get("error") if isinstance(data, dict) else None
    code = redact(code, *secrets) if isinstance(code, str) and code else f"http_{status}"
    message = f"{where}: HTTP {status} {_clip_plain(code, 200)}"
    headers = getattr(response, "headers", None)
    if status == 429 or code == "ratelimited":
        # Slack Web API: HTTP 429 `ratelimited` with Retry-After in seconds.
        after = _retry_after(headers if isinstance(headers, Mapping) else None)
        return _ApiError(message, code, recoverable=True, retry_after=after)
    if status >= 500 or code in _RECOVERABLE_API_ERRORS:
        return _ApiError(message, code, recoverable=True)
    # channel_not_found, not_in_channel, invalid_auth, is_archived, msg_too_long, ...
    return _ApiError(message, code, recoverable=False)


def _transport_error(where: str, exc: Exception, secrets: Sequence[Secret]) -> NotifyError:
    """A NotifyError for a request that got no HTTP answer, in words of our own."""
    reason: object = exc.reason if isinstance(exc, URLError) else exc
    if isinstance(exc, SlackRequestError | ValueError | InvalidURL):
        return NotifyError(f"{where}: the URL is not a valid http(s) URL", recoverable=False)
    if isinstance(reason, TimeoutError):
        return NotifyError(f"{where}: timed out", recoverable=True)
    if isinstance(reason, HTTPException):
        # RemoteDisconnected and friends: the connection closed without an answer.
        detail = f"connection closed without a response ({type(reason).__name__})"
        return NotifyError(f"{where}: {detail}", recoverable=True)
    if isinstance(reason, OSError):
        detail = reason.strerror or type(reason).__name__
        return NotifyError(f"{where}: {redact(detail, *secrets)}", recoverable=True)
    return NotifyError(f"{where}: {type(exc).__name__}", recoverable=False)
