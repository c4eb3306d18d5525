"""What a Grafana alert adds to its Slack message: the query values, the panel image, the
source in the trailer and the digest. Pure functions; an Alertmanager alert gets nothing
from here, so its message is what it always was.

Everything Grafana sends is escaped as labels are (receiver.notify.slack.text), so no
refId or valueString can mention `@channel` or open a link of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slack_sdk.models.blocks import Block, ImageBlock, SectionBlock

from receiver.models import Alert
from receiver.notify.grafana import query_values
from receiver.notify.slack.text import MAX_IMAGE_URL, fit, mrkdwn, web_url

MAX_FIELD_TEXT = 2000  # Slack: 2000 characters per field text
MAX_ALT_TEXT = 2000  # Slack: image block alt_text max 2000 characters

IMAGE_BLOCK_ID = "alert_router_image"
# Alt text of our own: nothing from the alert, so it needs no escaping anywhere.
_ALT_TEXT = "Panel image from Grafana"
assert len(_ALT_TEXT) <= MAX_ALT_TEXT

_TITLE = "*Query values*"
_REF = 60  # a refId as Grafana names queries ("A", "B", or a name someone typed)
_VALUE_STRING = 1000  # Grafana's valueString, shown when it sent no values
_DIGEST_VALUE = 40


def query_values_block(alert: Alert) -> Block | None:
    """One "Query values" field, `A = 61.5` a line, within Slack's 2000 characters a field;
    Grafana's valueString instead when it sent no values."""
    if alert.grafana is None:
        return None
    pairs = query_values(alert)
    if not pairs:
        if not alert.grafana.value_string:
            return None
        text = f"{_TITLE}\n{fit(alert.grafana.value_string, _VALUE_STRING)}"
        return SectionBlock(fields=[mrkdwn(text)])
    text = _TITLE
    for index, (ref, value) in enumerate(pairs):
        line = f"\n{fit(ref, _REF)} = {value}"
        more = f"\n… and {len(pairs) - index} more"
        if len(text) + len(line) + len(more) > MAX_FIELD_TEXT:
            text += more
            break
        text += line
    return SectionBlock(fields=[mrkdwn(text)])


def image_block(alert: Alert) -> Block | None:
    """Grafana's panel image when its URL is https (Slack fetches image_url itself, so it
    must be publicly reachable; an http or oversized URL is left out, not the message)."""
    if alert.grafana is None or not alert.grafana.image_url:
        return None
    url = web_url(alert.grafana.image_url, MAX_IMAGE_URL, https_only=True)
    if url is None:
        return None
    return ImageBlock(image_url=url, alt_text=_ALT_TEXT, block_id=IMAGE_BLOCK_ID)


def source_note(alert: Alert) -> str | None:
    """The trailer's note of where the alert came from; None for Alertmanager's (the
    message says nothing new for them)."""
    if alert.grafana is None:
        return None
    org = alert.grafana.org_id
    return "from Grafana" if org is None else f"from Grafana (org {org})"


def digest_mark(alert: Alert) -> str:
    """What a digest line adds after a Grafana alert's name: its source."""
    if alert.grafana is None:
        return ""
    return " _(Grafana)_"


def digest_value(alert: Alert) -> str:
    """The first query value for a digest line, ` · A = 61.5`, or ""."""
    pairs = query_values(alert)
    if not pairs:
        return ""
    ref, value = pairs[0]
    return f" · {fit(ref, _DIGEST_VALUE)} = {value}"


def without_image(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """`body` with its image blocks left out, or None when it has none.

    Slack refuses a whole message whose image it cannot download (`invalid_blocks`,
    "downloading image failed"): the notifiers send it once more without the image.
    """
    found = False

    def keep(blocks: Any) -> Any:
        nonlocal found
        if not isinstance(blocks, list):
            return blocks
        kept = [b for b in blocks if not (isinstance(b, dict) and b.get("type") == "image")]
        found = found or len(kept) < len(blocks)
        return kept

    stripped = dict(body)
    if "blocks" in stripped:
        stripped["blocks"] = keep(stripped["blocks"])
    attachments = stripped.get("attachments")
    if isinstance(attachments, list):
        stripped["attachments"] = [
            {**a, "blocks": keep(a.get("blocks"))} if isinstance(a, dict) and "blocks" in a else a
            for a in attachments
        ]
    return stripped if found else None
