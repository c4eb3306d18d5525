"""What each destination was sent about an episode, rendered again from its history: the
Slack blocks as text, the PagerDuty event as JSON (its routing key shown as the secret's
key name, never its value); and the links of the alert page."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from receiver.config.rules import Rules
from receiver.events import EventKind, Timeline
from receiver.history.summary import EpisodeSummary
from receiver.models import Alert, ContextValue, CostContext, DedupReason, Notification, Unit
from receiver.notify.pagerduty.events import trigger_event
from receiver.notify.slack.render import alert_message, silence_url
from receiver.notify.slack.text import web_url

# Our own bound on a link the page shows (browsers take far longer ones).
_MAX_LINK = 8000


@dataclass(frozen=True)
class Rendered:
    destination: str
    kind: str  # "slack", "pagerduty", or "" when the destination is not in the rules
    text: str


@dataclass(frozen=True)
class Link:
    label: str
    url: str | None  # None: no page to open (a webhook's message), `label` says where
    note: str = ""


def episode_alert(timeline: Timeline) -> Alert | None:
    """The alert as the first webhook of the episode carried it."""
    for event in timeline.events:
        if event.kind is EventKind.RECEIVED and isinstance(event.data.get("alert"), dict):
            return Alert.from_json(event.data["alert"])
    return None


def rendered_messages(rules: Rules, timeline: Timeline, summary: EpisodeSummary) -> list[Rendered]:
    """Each destination's message for the episode's first alert, as the rules in force
    render it."""
    alert = episode_alert(timeline)
    if alert is None:
        return []
    context = _context(summary.context)
    reasons = {
        e.destination: e.data.get("reason", "")
        for e in timeline.events
        if e.kind is EventKind.DEDUP
    }
    out = []
    for outcome in summary.outcomes:
        name = outcome.destination
        reason = _reason(reasons.get(name, ""))
        notification = Notification(alert, name, summary.route, reason, context, outcome.ref)
        spec = rules.destinations.get(name)
        if spec is None:
            out.append(Rendered(name, "", "(not in the rules in force: cannot render)"))
        elif spec.slack is not None:
            out.append(Rendered(name, "slack", blocks_text(alert_message(notification).body())))
        elif spec.pagerduty is not None:
            key = f"<secret {spec.pagerduty.routing_key.secret}>"
            event = trigger_event(notification, key, spec.pagerduty.default_severity).event
            out.append(Rendered(name, "pagerduty", json.dumps(event, indent=2, ensure_ascii=False)))
    return out


def episode_links(timeline: Timeline) -> list[Link]:
    """The Slack messages delivered, the Alertmanager silence and the Prometheus graph."""
    links = []
    for event in timeline.events:
        if event.kind is not EventKind.DELIVERED:
            continue
        ref = event.data.get("ref")
        if not isinstance(ref, Mapping):
            continue
        permalink = _link(str(ref.get("permalink", "")))
        if permalink is not None:
            links.append(Link(f"Slack message ({event.destination})", permalink))
        elif ref.get("channel") and ref.get("ts"):
            where = f"channel {ref['channel']}, ts {ref['ts']}"
            links.append(Link(f"Slack message ({event.destination})", None, where))
        elif ref.get("dedup_key"):
            links.append(
                Link(f"PagerDuty ({event.destination})", None, f"dedup_key {ref['dedup_key']}")
            )
    alert = episode_alert(timeline)
    if alert is not None:
        silence = _link(silence_url(alert) or "")
        if silence is not None:
            links.append(Link("Silence in Alertmanager", silence))
        graph = _link(alert.generator_url)
        if graph is not None:
            label = "Alert rule in Grafana" if alert.grafana is not None else "Prometheus graph"
            links.append(Link(label, graph))
    return links


def blocks_text(body: Mapping[str, Any]) -> str:
    """A Slack message body as plain lines: each block's texts, a blank line between."""
    blocks = list(body.get("blocks", []))
    for attachment in body.get("attachments", []):
        blocks.extend(attachment.get("blocks", []))
    return "\n\n".join("\n".join(_block_lines(block)) for block in blocks).strip()


def _block_lines(block: Mapping[str, Any]) -> Iterator[str]:
    kind = block.get("type")
    if kind == "divider":
        yield "----"
    elif kind == "image":
        yield f"[image: {block.get('alt_text', '')}]"
    elif kind == "actions":
        labels = [_text(e.get("text")) for e in block.get("elements", [])]
        yield "[buttons: " + " | ".join(labels) + "]"
    elif kind == "context":
        yield "  ·  ".join(_text(e) or e.get("alt_text", "") for e in block.get("elements", []))
    else:
        if block.get("text"):
            yield _text(block["text"])
        for item in block.get("fields", []):
            yield _text(item)


def _text(obj: Any) -> str:
    if isinstance(obj, Mapping):
        return str(obj.get("text", ""))
    return ""


def _context(values: Sequence[Mapping[str, Any]]) -> CostContext:
    found = []
    for item in values:
        try:
            found.append(
                ContextValue(
                    str(item["name"]),
                    str(item.get("title") or ""),
                    float(item["value"]),
                    Unit(item["unit"]),
                )
            )
        except (KeyError, TypeError, ValueError):
            continue
    return CostContext(values=tuple(found))


def _reason(value: Any) -> DedupReason:
    try:
        return DedupReason(value)
    except ValueError:
        return DedupReason.FIRST


def _link(url: str) -> str | None:
    return web_url(url, _MAX_LINK) if url else None
