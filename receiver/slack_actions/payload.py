"""A button press as Slack posts it: a form whose `payload` is a block_actions JSON object."""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from receiver.notify.slack.buttons import (
    ACKNOWLEDGE_ACTION,
    GRAFANA_SILENCE_ACTION,
    SILENCE_ACTION,
    ActionValue,
)
from receiver.notify.slack.text import escape

_SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,30}$")
# An unknown action id quoted in an error: enough to recognise it.
_ACTION_ID_TEXT = 100


@dataclass(frozen=True, slots=True)
class Press:
    """One button press, from a verified block_actions payload."""

    action: str  # "silence" or "acknowledge"
    seconds: float  # how long to silence (silence only)
    value: ActionValue
    user_id: str
    user_name: str
    channel: str
    ts: str
    message: Mapping[str, Any] | None
    response_url: str
    retry: int

    @property
    def who(self) -> str:
        """The presser in mrkdwn: a mention Slack shows as their name."""
        if _SLACK_USER_ID.match(self.user_id):
            return f"<@{self.user_id}>"
        return escape(self.user_name or self.user_id or "someone")

    @property
    def created_by(self) -> str:
        """The presser for Alertmanager's createdBy: their Slack name, else their id."""
        return self.user_name or self.user_id or "slack"

    def log_fields(self) -> dict[str, Any]:
        """Who pressed what, on which message and alert: the `extra` of every log line."""
        value = self.value
        return {
            "action": self.action,
            "user": self.created_by,
            "user_id": self.user_id,
            "alertname": value.alertname,
            "fingerprint": value.fingerprint,
            "episode": value.episode,
            "destination": value.destination,
            "source": value.source,
            "channel": self.channel,
            "ts": self.ts,
            "retry": self.retry,
        }


def parse_press(body: bytes, headers: Mapping[str, str]) -> Press | None:
    """The press in a block_actions payload; None for another kind of interaction.
    ValueError says what is wrong with a payload that is not one."""
    form = urllib.parse.parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    raw = form.get("payload")
    if not raw:
        raise ValueError("no payload field in the form")
    try:
        payload = orjson.loads(raw[0])
    except orjson.JSONDecodeError:
        raise ValueError("payload is not JSON") from None
    if not isinstance(payload, dict):
        raise ValueError("payload is not a JSON object")
    if payload.get("type") != "block_actions":
        return None
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise ValueError("block_actions payload without actions")
    action = actions[0]
    if action.get("action_id") == GRAFANA_SILENCE_ACTION:
        # A link button: Slack opened Grafana's silence page; the press asks nothing of us.
        return None
    kind, seconds = _action(str(action.get("action_id") or ""))
    try:
        value = ActionValue.decode(str(action.get("value") or ""))
    except ValueError as exc:
        raise ValueError(f"button value: {exc}") from None
    user = _object(payload, "user") or {}
    container = _object(payload, "container") or {}
    message = _object(payload, "message")
    channel_id = str(
        container.get("channel_id") or (_object(payload, "channel") or {}).get("id") or ""
    )
    ts = str(container.get("message_ts") or (message or {}).get("ts") or "")
    if not channel_id or not ts:
        raise ValueError("block_actions payload without the message's channel and ts")
    response_url = str(payload.get("response_url") or "")
    if not response_url.startswith(("https://", "http://")):
        raise ValueError("block_actions payload without response_url")
    retry = headers.get("x-slack-retry-num", "0")
    return Press(
        action=kind,
        seconds=seconds,
        value=value,
        user_id=str(user.get("id") or ""),
        user_name=str(user.get("username") or user.get("name") or ""),
        channel=channel_id,
        ts=ts,
        message=message,
        response_url=response_url,
        retry=int(retry) if retry.isdigit() else 0,
    )


def _action(action_id: str) -> tuple[str, float]:
    """The kind of a button and, for a silence, its duration in seconds."""
    unknown = f"unknown action {action_id[:_ACTION_ID_TEXT]!r}"
    if action_id == ACKNOWLEDGE_ACTION:
        return "acknowledge", 0.0
    if not action_id.startswith(SILENCE_ACTION):
        raise ValueError(unknown)
    try:
        seconds = float(action_id.removeprefix(SILENCE_ACTION))
    except ValueError:
        raise ValueError(unknown) from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(unknown)
    return "silence", seconds


def _object(payload: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    found = payload.get(key)
    return found if isinstance(found, dict) else None
