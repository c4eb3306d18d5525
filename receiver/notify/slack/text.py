"""Slack mrkdwn text: escaping, truncation, date tokens, links and safe URLs.

Label and annotation text is escaped so that no alert can mention `@channel`, open a
link of its own or break a message; `fit` cuts text to a Block Kit limit without
splitting an entity.
"""

from __future__ import annotations

import re
import urllib.parse
from datetime import datetime

from slack_sdk.models.blocks import MarkdownTextObject, PlainTextObject

from receiver.models import format_time

# One link per line must leave room in a section (Slack: section text max 3000 characters).
MAX_LINK_URL = 2000
MAX_IMAGE_URL = 3000  # Slack: image block image_url max 3000 characters
MAX_BUTTON_URL = 3000  # Slack: button url max 3000 characters
# A link's label: short enough that a line of links stays readable.
_MAX_LINK_LABEL = 200

_MENTION_WORDS = re.compile(r"@(?=(?:here|channel|everyone)\b)", re.IGNORECASE)
_URL_SAFE = "!#$%&'()*+,-./:;=?@[]~_"


def escape(text: str) -> str:
    """Escape text for Slack mrkdwn (`&`, `<`, `>`) and defuse `@here`-style words."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MENTION_WORDS.sub("@\u2060", text)


def fit(text: str, limit: int) -> str:
    """`text` escaped, cut to `limit` characters with an ellipsis, never inside an entity."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: max(limit - 1, 0)]
    amp = cut.rfind("&", max(len(cut) - 4, 0))  # "&amp;" is the longest entity: 5 characters
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def clip_plain(text: str, limit: int) -> str:
    """Plain text (not mrkdwn) cut to `limit` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mrkdwn(text: str) -> MarkdownTextObject:
    # verbatim: Slack does not auto-link channel names, mentions or bare URLs in our text.
    return MarkdownTextObject(text=text, verbatim=True)


def plain(text: str) -> PlainTextObject:
    return PlainTextObject(text=text, emoji=True)


def slack_date(value: datetime) -> str:
    """Slack's date token: shown in the reader's time zone, with a UTC fallback."""
    return f"<!date^{int(value.timestamp())}^{{date_short_pretty}} {{time}}|{format_time(value)}>"


def mrkdwn_link(url: str, label: str) -> str:
    """`<url|label>` with the label escaped; the label alone if the URL is unusable."""
    safe = safe_url(url)
    text = fit(label, _MAX_LINK_LABEL)
    return f"<{safe}|{text}>" if safe is not None else text


def safe_url(raw: str) -> str | None:
    """An http(s) URL made safe inside `<url|label>`, or None if unusable or too long."""
    if not raw.startswith(("http://", "https://")):
        return None
    url = urllib.parse.quote(raw, safe=_URL_SAFE).replace("&", "&amp;")
    return url if len(url) <= MAX_LINK_URL else None


def web_url(raw: str, limit: int, *, https_only: bool = False) -> str | None:
    """An http(s) URL for a JSON field (an image's `image_url`, a button's `url`), not for
    mrkdwn: percent-encoded where needed, None if unusable or over `limit` characters."""
    schemes = ("https",) if https_only else ("http", "https")
    try:
        parts = urllib.parse.urlsplit(raw)
    except ValueError:  # an unbalanced "[" in the host, say
        return None
    if parts.scheme not in schemes or not parts.netloc:
        return None
    url = urllib.parse.quote(raw, safe=_URL_SAFE)
    return url if len(url) <= limit else None
