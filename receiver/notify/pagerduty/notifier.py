"""The PagerDuty notifier: sends the events of `events.py` and maps PagerDuty's answers.

Each answer becomes a ref (the dedup_key) or a NotifyError that says whether trying again
can succeed, after PagerDuty's table of response codes. The pipeline owns retries.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any
from urllib.parse import SplitResult, urlsplit

import httpx2
import pagerduty

from receiver.config.secrets import MissingSecretError, Secret, SecretSource, redact, redact_url
from receiver.models import Alert, Notification
from receiver.notify.base import NotifyError, Ref
from receiver.notify.http import retry_after_seconds
from receiver.notify.pagerduty.client import events_client
from receiver.notify.pagerduty.events import (
    MAX_EVENT_BYTES,
    SEVERITIES,
    acknowledge_event,
    clip,
    dedup_key,
    resolve_event,
    trigger_event,
)

# dedup_key is imported from here by the Slack actions and the tests.
__all__ = ["EVENTS_URL", "PagerDutyNotifier", "dedup_key"]

log = logging.getLogger("alert_router.notify.pagerduty")

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"

_MASK = "****"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")
# Enough of a proxy's error page to say what it is, not so much that it floods a log line.
_ERROR_TEXT_CHARS = 300
_TAG = re.compile(r"<[^>]*>")

_BuildEvent = Callable[[str], dict[str, Any]]


class PagerDutyNotifier:
    """Sends Alertmanager alerts to one PagerDuty service through the Events API v2."""

    max_batch = 1

    def __init__(
        self,
        name: str,
        routing_key: SecretSource,
        *,
        events_url: str = EVENTS_URL,
        default_severity: str = "warning",
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`events_url` is the full enqueue URL (PAGERDUTY_EVENTS_URL). `ssl_context`, when
        given, is used instead of a new one with the system's CAs (one can serve all
        notifiers: loading the CAs takes tens of milliseconds)."""
        if default_severity not in SEVERITIES:
            raise ValueError(
                f"default_severity must be one of {', '.join(SEVERITIES)}, not {default_severity!r}"
            )
        parts = _http_url(events_url)
        if parts is None:
            raise ValueError(f"events_url must be an http(s) URL, not {redact_url(events_url)}")
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
            log.warning(
                "PagerDuty events URL is plain http: routing keys travel unencrypted",
                extra={"destination": name, "url": redact_url(events_url)},
            )
        self.name = name
        self.default_severity = default_severity
        self._routing_key = routing_key
        self._url = events_url
        # Built once: its pool keeps the destination's keep-alive connections for every
        # event (one per send in flight; the pipeline runs a few at once).
        self._client = events_client(events_url, timeout, ssl_context)
        # Sends in flight, and whether aclose was called: the last send closes the client.
        self._lock = threading.Lock()
        self._sending = 0
        self._closed = False

    async def notify(self, batch: Sequence[Notification]) -> Sequence[Ref | None]:
        refs: list[Ref | None] = []
        for notification in batch:
            refs.append(await self._in_thread(partial(self._event, notification)))
        return refs

    async def acknowledge(self, alert: Alert) -> Ref:
        """Send PagerDuty's `acknowledge` for `alert`'s episode; errors as for `notify`."""
        return await self._in_thread(partial(acknowledge_event, alert))

    def render(self, batch: Sequence[Notification]) -> list[dict[str, Any]]:
        return [self._event(notification, _MASK) for notification in batch]

    async def aclose(self) -> None:
        """Close the pooled connections, without waiting for the sends in flight.

        With sends in flight the last of them closes the client when it ends: a rules
        reload never cuts a request short, and the caller never waits for PagerDuty.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            idle = self._sending == 0
        if idle:
            # Closing sockets does no network I/O: quick enough for the event loop.
            self._client.close()

    async def _in_thread(self, build: _BuildEvent) -> Ref:
        # The client is synchronous. asyncio.to_thread uses the send pool the server sizes
        # for the pipeline's parallel sends (receiver.server); a pool of our own would have
        # to know that number too.
        return await asyncio.to_thread(self._send_counted, build)

    def _send_counted(self, build: _BuildEvent) -> Ref:
        """`_send`, counted as in flight; the last send after aclose closes the client."""
        with self._lock:
            if self._closed:
                # A delivery loop that took this notifier just before a rules reload.
                raise NotifyError(f"PagerDuty destination {self.name} was closed", recoverable=True)
            self._sending += 1
        try:
            return self._send(build)
        finally:
            with self._lock:
                self._sending -= 1
                last = self._closed and self._sending == 0
            if last:
                self._client.close()

    def _event(self, notification: Notification, routing_key: str) -> dict[str, Any]:
        """The event for a notification: a resolve for a resolved alert, else a trigger."""
        alert = notification.alert
        if not alert.firing:
            return resolve_event(alert, routing_key)
        fitted = trigger_event(notification, routing_key, self.default_severity)
        if fitted.shrunk:
            log.warning(
                "pagerduty event shrunk to fit the size limit",
                extra={
                    "destination": self.name,
                    "dedup_key": fitted.event["dedup_key"],
                    "size_bytes": fitted.full_size,
                    "shrunk_bytes": fitted.size,
                    "limit_bytes": MAX_EVENT_BYTES,
                },
            )
        return fitted.event

    def _send(self, build: _BuildEvent) -> Ref:
        """Send the event `build` makes with the current routing key (on the send thread)."""
        try:
            key = self._routing_key()
        except MissingSecretError as exc:
            # A mounted Secret can be briefly absent while Kubernetes swaps it; try again.
            raise NotifyError(str(exc), recoverable=True) from None
        event = build(key.reveal())
        started = time.monotonic()
        try:
            response = self._client.post(self._url, json=event)
        except pagerduty.Error as exc:
            if exc.response is not None:
                # The client refuses redirects: PagerDuty's Events API never issues one.
                raise _http_error(exc.response, key) from None
            raise self._network_error(exc.__cause__ or exc, started, key) from None
        except httpx2.HTTPError as exc:
            # E.g. a response body that cannot be decoded: the event may or may not have
            # landed; sending it again is safe because PagerDuty dedups on dedup_key.
            raise self._network_error(exc, started, key) from None
        if not response.is_success:
            raise _http_error(response, key)
        sent_key = event["dedup_key"]
        body = _json_or_none(response)
        if isinstance(body, dict) and isinstance(body.get("dedup_key"), str):
            sent_key = body["dedup_key"]
        log.debug(
            "pagerduty event sent",
            extra={
                "destination": self.name,
                "event_action": event["event_action"],
                "dedup_key": sent_key,
                "status": response.status_code,
            },
        )
        return {"dedup_key": sent_key}

    def _network_error(self, exc: BaseException, started: float, key: Secret) -> NotifyError:
        detail = redact(str(exc), key) or "no detail"
        elapsed = time.monotonic() - started
        return NotifyError(
            f"cannot reach PagerDuty at {redact_url(self._url)} after {elapsed:.1f}s: "
            f"{type(exc).__name__}: {detail}",
            recoverable=True,
        )


def _http_error(response: httpx2.Response, key: Secret) -> NotifyError:
    """NotifyError for a non-2xx answer, after PagerDuty's table of response codes:
    400 is final, 429 and 5xx are worth another try later."""
    status = response.status_code
    body = _json_or_none(response)
    parts = [f"PagerDuty answered HTTP {status}"]
    if isinstance(body, dict):
        if body.get("status"):
            parts[0] += f" ({body['status']})"
        if body.get("message"):
            parts.append(str(body["message"]))
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            parts.append("; ".join(str(error) for error in errors))
    else:
        # A load balancer's error page: its text without the markup.
        text = " ".join(_TAG.sub(" ", response.text).split())
        if text:
            parts.append(clip(text, _ERROR_TEXT_CHARS))
    if 300 <= status < 400:
        parts.append("the Events API does not redirect; check PAGERDUTY_EVENTS_URL")
    # 408 is a proxy's timeout: nothing is wrong with the event.
    recoverable = status in (408, 429) or status >= 500
    retry_after = retry_after_seconds(response.headers.get("retry-after")) if recoverable else None
    return NotifyError(
        redact(": ".join(parts), key),
        recoverable=recoverable,
        retry_after=retry_after,
        status=status,
    )


def _http_url(url: str) -> SplitResult | None:
    """`url` split, if it is an http(s) URL with a host and a port in range; else None."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port out of range
    except ValueError:
        return None
    return parts if parts.scheme in ("http", "https") and parts.hostname else None


def _json_or_none(response: httpx2.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
