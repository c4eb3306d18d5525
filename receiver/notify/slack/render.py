"""Block Kit rendering: pure functions from notifications to Slack request bodies.

A single notification is one message (header, then a coloured attachment with summary,
cost context, labels, links and a trailer); a batch of several is one digest that names
every alert. A resolve of a bot message is an edit of the original (`update_body`) and a
reply in its thread (`reply_body`). Every Block Kit limit is cited where it is used.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.attachments import BlockAttachment
from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from receiver.config.durations import format_elapsed
from receiver.context.units import format_context
from receiver.matchers import MatchType, format_matcher
from receiver.models import Alert, ContextValue, DedupReason, Notification
from receiver.notify import grafana
from receiver.notify.base import Ref
from receiver.notify.slack.buttons import GRAFANA_BLOCK_ID, Buttons, actions_block
from receiver.notify.slack.grafana import (
    digest_mark,
    digest_value,
    image_block,
    query_values_block,
    source_note,
)
from receiver.notify.slack.text import fit, mrkdwn, plain, safe_url, slack_date

# Block Kit limits (docs.slack.dev/reference/block-kit/blocks).
MAX_BLOCKS = 50  # Slack: 50 blocks per message (top level and attachments together here)
MAX_SECTION_TEXT = 3000  # Slack: section text max 3000 characters
MAX_FIELDS = 10  # Slack: 10 fields per section
MAX_FIELD_TEXT = 2000  # Slack: 2000 characters per field text
MAX_HEADER_TEXT = 150  # Slack: header text max 150 characters
MAX_CONTEXT_ELEMENTS = 10  # Slack: 10 elements per context block
# Slack: top-level `text` is truncated past 40,000 characters and should stay under 4,000;
# with blocks present it is only the notification fallback.
MAX_FALLBACK_TEXT = 3000

# Our own budgets inside those limits.
_MAX_COST_FIELDS = 3 * MAX_FIELDS  # at most 3 field sections of cost context
_COST_TEXT = 200  # a cost field's title and value each: 2 x 200 < 2000 (Slack: field text)
_SUMMARY = 500  # the bold summary line; the description gets the rest of the section
_SILENCE_VALUE = 200  # longer label values become a prefix regex matcher in the silence link
_LABEL_VALUE = 300
_LABEL_NAME = 100
_ROUTE = 200
_NAME_IN_REPLY = 150

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

_RE2_SPECIAL = frozenset("\\.+*?()|[]{}^$")
_LINK_SEPARATOR = "  ·  "


@dataclass(frozen=True, slots=True)
class Message:
    """A rendered message: fallback text, top-level blocks, one coloured attachment."""

    text: str
    blocks: list[Block]
    color: str
    attachment_blocks: list[Block]

    def body(self) -> dict[str, Any]:
        attachment = BlockAttachment(
            blocks=self.attachment_blocks, color=self.color, fallback=self.text
        )
        return {
            "text": self.text,
            "blocks": [block.to_dict() for block in self.blocks],
            "attachments": [attachment.to_dict()],
            # Graph and runbook links would otherwise unfurl into large previews.
            "unfurl_links": False,
            "unfurl_media": False,
        }


def render_batch(batch: Sequence[Notification], buttons: Buttons | None = None) -> Message:
    """One notification's message (with `buttons` when firing), or a digest of several."""
    if len(batch) == 1:
        return alert_message(batch[0], buttons)
    return digest_message(batch)


def alert_message(notification: Notification, buttons: Buttons | None = None) -> Message:
    alert = notification.alert
    status = "FIRING" if alert.firing else "RESOLVED"
    summary = alert.annotations.get("summary", "")
    description = alert.annotations.get("description", "")

    header = plain(fit(f"{_icon(alert)} {status}: {alert.name}", MAX_HEADER_TEXT))
    blocks: list[Block] = [HeaderBlock(text=header)]
    body: list[Block] = []
    if summary or description:
        head = f"*{fit(summary, _SUMMARY)}*" if summary else ""
        room = MAX_SECTION_TEXT - len(head) - 1
        text = "\n".join(part for part in (head, fit(description, room)) if part)
        body.append(SectionBlock(text=mrkdwn(text)))
    values = query_values_block(alert)
    if values is not None:
        body.append(values)
    body.extend(_cost_blocks(notification))
    labels = _labels_text(alert)
    if labels:
        body.append(SectionBlock(text=mrkdwn(labels)))
    body.extend(_link_blocks(alert))
    image = image_block(alert)
    if image is not None:
        body.append(image)
    # The Grafana mark lets a button press tell the alert's source from the message alone.
    trailer_id = GRAFANA_BLOCK_ID if alert.grafana is not None else None
    body.append(ContextBlock(elements=_trailer(notification), block_id=trailer_id))
    if buttons is not None and alert.firing:
        actions = actions_block(notification, buttons)
        if actions is not None:
            body.append(actions)

    fallback = f"[{status}] {alert.name}" + (f": {summary}" if summary else "")
    return Message(
        text=fit(fallback, MAX_FALLBACK_TEXT),
        blocks=blocks,
        color=_color(alert),
        attachment_blocks=body,
    )


def digest_message(batch: Sequence[Notification]) -> Message:
    firing = sum(1 for n in batch if n.alert.firing)
    resolved = len(batch) - firing
    title = f"{len(batch)} alerts: {firing} firing, {resolved} resolved"
    lines = [_digest_line(n) for n in batch]
    body: list[Block] = [
        SectionBlock(text=mrkdwn("\n".join(lines[i : i + _DIGEST_LINES_PER_SECTION])))
        for i in range(0, len(lines), _DIGEST_LINES_PER_SECTION)
    ]
    note = "One digest instead of separate messages (Slack: 1 message per second per channel)."
    elements = [mrkdwn(note)]
    # Each source's own UI: an Alertmanager alert's externalURL is Alertmanager's, a
    # Grafana alert's is Grafana's.
    first = next((n.alert for n in batch if n.alert.grafana is None), None)
    alertmanager = safe_url(first.external_url) if first is not None else None
    if alertmanager is not None:
        elements.append(mrkdwn(f"<{alertmanager}|Alertmanager>"))
    grafana_alert = next((n.alert for n in batch if n.alert.grafana is not None), None)
    if grafana_alert is not None:
        url = safe_url(grafana_alert.external_url)
        if url is not None:
            elements.append(mrkdwn(f"<{url}|Grafana>"))
    body.append(ContextBlock(elements=elements))
    if any(n.alert.firing and _is_red(n.alert) for n in batch):
        color = _RED
    else:
        color = _ORANGE if firing else _GREEN
    names = ", ".join(dict.fromkeys(n.alert.name for n in batch))
    return Message(
        text=fit(f"[DIGEST] {title}: {names}", MAX_FALLBACK_TEXT),
        blocks=[HeaderBlock(text=plain(title))],
        color=color,
        attachment_blocks=body,
    )


def update_body(notification: Notification, ref: Ref) -> dict[str, Any]:
    """chat.update of the original message `ref` to show the resolve."""
    body = alert_message(notification).body()
    # chat.update takes no unfurl options: an edit keeps the message's unfurl settings.
    body.pop("unfurl_links")
    body.pop("unfurl_media")
    return {"channel": ref["channel"], "ts": ref["ts"], **body}


def reply_body(notification: Notification, ref: Ref, *, broadcast: bool) -> dict[str, Any]:
    """chat.postMessage of a resolve into the thread of `ref` (shown in the channel too
    when `broadcast`: a digest's other alerts stay listed, so the channel learns here)."""
    alert = notification.alert
    summary = alert.annotations.get("summary", "")
    when = slack_date(alert.ends_at) if alert.ends_at is not None else "now"
    head = f"{_icon(alert)} *Resolved* {when}: {fit(alert.name, _NAME_IN_REPLY)}"
    text = head + (f" — {fit(summary, MAX_SECTION_TEXT - len(head) - 3)}" if summary else "")
    blocks: list[Block] = [SectionBlock(text=mrkdwn(text)), *_cost_blocks(notification)]
    fallback = f"[RESOLVED] {alert.name}" + (f": {summary}" if summary else "")
    body: dict[str, Any] = {
        "channel": ref["channel"],
        "thread_ts": ref["ts"],
        "text": fit(fallback, MAX_FALLBACK_TEXT),
        "blocks": [block.to_dict() for block in blocks],
        "unfurl_links": False,
        "unfurl_media": False,
    }
    if broadcast:
        body["reply_broadcast"] = True
    return body


def message_ref(notification: Notification) -> Ref | None:
    """The original message a resolve should edit, if there is one."""
    ref = notification.ref
    if notification.alert.firing or not ref or not ref.get("channel") or not ref.get("ts"):
        return None
    return ref


def silence_url(alert: Alert) -> str | None:
    """Alertmanager's new-silence form prefilled with the alert's labels as matchers
    (None for a Grafana alert: its externalURL is Grafana's)."""
    if alert.grafana is not None:
        return None
    base = alert.external_url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        return None
    matchers = ",".join(_silence_matcher(k, v) for k, v in sorted(alert.labels.items()))
    return f"{base}/#/silences/new?filter=" + urllib.parse.quote("{" + matchers + "}", safe="")


# -- parts of a message ------------------------------------------------------------------


def _digest_line(notification: Notification) -> str:
    alert = notification.alert
    status = "FIRING" if alert.firing else "RESOLVED"
    head = f"{_icon(alert)} *{status}* {fit(alert.name, 80)}{digest_mark(alert)}"
    cost = digest_value(alert)
    if notification.context.values:
        first = notification.context.values[0]
        cost = f" · {fit(_title(first), 40)}: {fit(format_context(first), 40)}"
    detail = alert.annotations.get("summary") or ", ".join(
        f"{k}={v}" for k, v in sorted(alert.labels.items()) if k != "alertname"
    )
    room = _DIGEST_LINE - len(head) - len(cost) - 3
    return f"{head} — {fit(detail, max(room, 2))}{cost}"


def _cost_blocks(notification: Notification) -> list[Block]:
    context = notification.context
    fields = [
        mrkdwn(f"*{fit(_title(item), _COST_TEXT)}*\n{fit(format_context(item), _COST_TEXT)}")
        for item in context.values[:_MAX_COST_FIELDS]
    ]
    blocks: list[Block] = [
        SectionBlock(fields=fields[i : i + MAX_FIELDS]) for i in range(0, len(fields), MAX_FIELDS)
    ]
    if context.unavailable:
        reasons = "; ".join(f"{name} ({reason})" for name, reason in context.unavailable)
        text = "cost context unavailable: " + fit(reasons, MAX_SECTION_TEXT - 40)
        blocks.append(ContextBlock(elements=[mrkdwn(text)]))
    return blocks


def _labels_text(alert: Alert) -> str:
    items = [(k, v) for k, v in sorted(alert.labels.items()) if k != "alertname"]
    if not items:
        return ""
    text = "*Labels*"
    for index, (key, value) in enumerate(items):
        line = f"\n• *{fit(key, _LABEL_NAME)}*: {fit(value, _LABEL_VALUE)}"
        more = f"\n… and {len(items) - index} more"
        if len(text) + len(line) + len(more) > MAX_SECTION_TEXT:
            return text + more
        text += line
    return text


def _link_blocks(alert: Alert) -> list[Block]:
    links: list[str] = []
    # A Grafana alert's generatorURL is its rule's page in Grafana, not a graph.
    candidates = [
        ("Alert rule" if alert.grafana is not None else "Graph", alert.generator_url),
        ("Runbook", alert.annotations.get("runbook_url", "")),
    ]
    from_grafana = grafana.grafana_links(alert)
    if not any(label == "Dashboard" for label, _ in from_grafana):
        candidates.append(("Dashboard", alert.annotations.get("dashboard_url", "")))
    candidates += from_grafana
    for label, raw in candidates:
        url = safe_url(raw)
        if url is not None:
            links.append(f"<{url}|{label}>")
    silence = _silence_link(alert)
    if silence is not None:
        links.append(f"<{silence}|Silence>")
    # Pack the links into as few sections as Slack's 3000 characters a section allow.
    sections: list[str] = []
    for link in links:
        if sections and len(sections[-1]) + len(_LINK_SEPARATOR) + len(link) <= MAX_SECTION_TEXT:
            sections[-1] += _LINK_SEPARATOR + link
        else:
            sections.append(link)
    return [SectionBlock(text=mrkdwn(text)) for text in sections]


def _trailer(notification: Notification) -> list[MarkdownTextObject]:
    alert = notification.alert
    parts = [mrkdwn(f"Started {slack_date(alert.starts_at)}")]
    if not alert.firing and alert.ends_at is not None:
        lasted = format_elapsed((alert.ends_at - alert.starts_at).total_seconds())
        parts.append(mrkdwn(f"Resolved {slack_date(alert.ends_at)} after {lasted}"))
    if notification.reason is DedupReason.REPEAT:
        parts.append(mrkdwn("still firing: repeat notification"))
    if notification.route:
        parts.append(mrkdwn(f"route: {fit(notification.route, _ROUTE)}"))
    note = source_note(alert)
    if note is not None:
        parts.append(mrkdwn(note))
    return parts[:MAX_CONTEXT_ELEMENTS]


def _silence_link(alert: Alert) -> str | None:
    if alert.grafana is not None:
        # Grafana's own silence page: a Grafana alert is not Alertmanager's to silence.
        own = grafana.silence_url(alert)
        return safe_url(own) if own is not None else None
    url = silence_url(alert)
    if url is None:
        return None
    # Too many labels for one link: the empty form is better than a broader filter.
    return safe_url(url) or safe_url(alert.external_url.rstrip("/") + "/#/silences/new")


def _silence_matcher(name: str, value: str) -> str:
    if len(value) > _SILENCE_VALUE:
        prefix = "".join("\\" + c if c in _RE2_SPECIAL else c for c in value[:_SILENCE_VALUE])
        return format_matcher(name, MatchType.REGEX, prefix + ".*")
    return format_matcher(name, MatchType.EQUAL, value)


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
