"""Helpers of the Slack notifier tests: alerts, notifications, delivery, leak checks."""

from __future__ import annotations

import asyncio
import html
import os
import re
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from receiver.config.secrets import SecretStore
from receiver.models import Alert, ContextValue, CostContext, DedupReason, Notification, Unit
from receiver.notify.base import Notifier, NotifyError, Ref
from receiver.notify.slack.webhook import SlackWebhookNotifier
from tests.fakes.slack import (
    MAX_BLOCKS,
    MAX_FIELD_TEXT,
    MAX_HEADER_TEXT,
    MAX_SECTION_TEXT,
    strings,
    validate_message,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


HOSTILE = {
    "alertname": "HighGPUCost",
    "team": "<!channel>",
    "owner": "<@U123>",
    "link": "<https://evil.example|click>",
    "amp": "R&D <b>",
    "here": "@here and <!here>",
    "huge": "x" * 10_000,
}


INJECTIONS = ("<!channel>", "<!here>", "<@U123>", "<https://evil", "<b>")


def make_alert(
    name: str = "HighGPUCost",
    *,
    status: str = "firing",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    external_url: str = "http://alertmanager.example:9093",
) -> Alert:
    return Alert(
        fingerprint=f"fp-{name}",
        status=status,
        labels={"alertname": name, "service": "trainer", "severity": "critical", **(labels or {})},
        annotations=(
            {"summary": f"{name} on trainer", "runbook_url": "https://runbooks.example/gpu"}
            if annotations is None
            else annotations
        ),
        starts_at=T0,
        ends_at=T0 + timedelta(hours=1, minutes=20) if status == "resolved" else None,
        generator_url="http://prometheus.example:9090/graph?g0.expr=service_cost_per_hour+%3E+50",
        external_url=external_url,
    )


def notification(
    alert: Alert, *, context: CostContext | None = None, ref: Ref | None = None
) -> Notification:
    return Notification(
        alert=alert,
        destination="finops",
        route="expensive",
        reason=DedupReason.FIRST if alert.firing else DedupReason.RESOLVED,
        context=context or CostContext(),
        ref=ref,
    )


def resolved(n: Notification, ref: Ref | None) -> Notification:
    a = n.alert
    alert = make_alert(a.name, status="resolved", labels=a.labels, annotations=a.annotations)
    return notification(alert, context=n.context, ref=ref)


def deliver(notifier: Notifier, batch: Sequence[Notification]) -> list[Ref | None]:
    """`notify` in a loop of its own; the notifier's session is closed before that loop
    ends, as the pipeline closes it (aiohttp warns of a session left open)."""

    async def run() -> list[Ref | None]:
        try:
            return list(await notifier.notify(batch))
        finally:
            await notifier.aclose()

    return asyncio.run(run())


def failure(notifier: Notifier, batch: Sequence[Notification]) -> NotifyError:
    with pytest.raises(NotifyError) as info:
        deliver(notifier, batch)
    return info.value


def write_secret(store: SecretStore, key: str, value: str) -> None:
    """Write a secret file so that its mtime surely changes (as a Secret update does)."""
    path = store.directory / key
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(value + "\n", encoding="utf-8")
    later = max(before, path.stat().st_mtime_ns) + 2_000_000_000
    os.utime(path, ns=(later, later))


def all_text(body: Any) -> str:
    return "\n".join(strings(body))


def mrkdwn_tokens(body: Any) -> list[str]:
    """Every `<...>` token Slack would interpret in the message."""
    return [token for text in strings(body) for token in re.findall(r"<([^<>]*)>", text)]


def links(body: Any) -> dict[str, str]:
    """Link label -> URL (as a browser would open it) from `<url|label>` tokens."""
    found: dict[str, str] = {}
    for token in mrkdwn_tokens(body):
        if "|" in token and token.startswith("http"):
            url, label = token.split("|", 1)
            found[label] = html.unescape(url)
    return found


def offline() -> SlackWebhookNotifier:
    """A notifier for render() alone: it has no secret and never sends."""
    return SlackWebhookNotifier(
        "offline", SecretStore(Path(__file__).parent / "no-secrets", environ={}).source("x")
    )


def context_value(name: str, title: str, value: float, unit: Unit) -> ContextValue:
    return ContextValue(name=name, title=title, value=value, unit=unit)


def assert_within_limits(body: Mapping[str, Any]) -> None:
    assert validate_message(body) is None
    blocks = list(body.get("blocks", []))
    for attachment in body.get("attachments", []):
        blocks.extend(attachment.get("blocks", []))
    assert len(blocks) <= MAX_BLOCKS
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= MAX_HEADER_TEXT
        if block["type"] == "section":
            assert len(block.get("text", {}).get("text", "")) <= MAX_SECTION_TEXT
            assert all(len(f["text"]) <= MAX_FIELD_TEXT for f in block.get("fields", []))


SECRET_HOOK_PATH = "/services/T0SECRET/B0SECRET/s3cr3tW3bh00kT0k3n"


SECRET_TOKEN = "xoxb-1111-2222-s3cr3tB0tT0k3n"


def assert_leaks_no_secret(
    error: NotifyError, caplog: pytest.LogCaptureFixture, secrets: Sequence[str]
) -> None:
    """Alertmanager's AssertNotifyLeaksNoSecret: not in the error, its chain, or any log."""
    texts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    for record in caplog.records:
        texts.append(record.getMessage())
        texts.append(repr(record.args))
        if record.exc_info:
            texts.append("".join(traceback.format_exception(*record.exc_info)))
    texts.append(caplog.text)
    for secret in secrets:
        for text in texts:
            assert secret not in text


def post(url: str, body: bytes, headers: Mapping[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method="POST", headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}
