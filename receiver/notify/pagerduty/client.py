"""The `pagerduty` package's Events API client, set up to send each event exactly once.

`EventsApiV2Client` is an `httpx2.Client`: it holds a connection pool, so one client per
destination keeps one keep-alive connection to PagerDuty for all of that destination's events.
"""

from __future__ import annotations

import logging
import ssl

import pagerduty
from pagerduty.auth_method import BodyParameterAuthMethod


class EventsClient(pagerduty.EventsApiV2Client):
    """EventsApiV2Client that accepts a plain-http URL (a local PagerDuty stand-in, or a
    proxy); its own setter insists on https."""

    @property
    def url(self) -> str:
        return str(self._url)

    @url.setter
    def url(self, value: str) -> None:
        self._url = value


def events_client(url: str, timeout: float, ssl_context: ssl.SSLContext | None) -> EventsClient:
    """A client for the enqueue URL `url` that sends once and reports what PagerDuty said."""
    client = EventsClient("", base_url=url, verify=ssl_context or True)
    client.auth_method = _EventBodyAuth()
    # The class declares an int, but the value goes to httpx2 as its timeout, a float.
    client.timeout = timeout  # type: ignore[assignment]
    _no_retries(client)
    return client


def _no_retries(client: EventsClient) -> None:
    """Switch off the client's own retries, the one place they are configured.

    The client would retry with blocking sleeps (seconds long, on our send thread) and
    without regard to Retry-After; the pipeline owns retries, backoff and rate limits, and
    it needs to see every failure to do that.
    """
    # A network error raises after the first attempt ...
    client.max_network_attempts = 0
    # ... and each error status is returned at once. Statuses without a `retry` entry are
    # returned as they are, except 429 (retried forever) and 401 (raised); those two get an
    # entry, and a negative max_http_attempts ends their retry loop before the first sleep.
    client.retry = {429: 1, 401: 1}
    client.max_http_attempts = -1
    client.sleep_timer = 0.0
    # With the settings above the client's only log line is a misleading "exceeded maximum
    # number of attempts" error for 429 and 401; the notifier logs every outcome itself.
    client.log = _quiet_logger()


class _EventBodyAuth(BodyParameterAuthMethod):
    """Adds nothing: the routing key is part of the event we build, read from the
    SecretSource at every send, so the client never holds a (possibly stale) key."""

    def __init__(self) -> None:
        # All AuthMethod.__init__ does (it is untyped, hence not called).
        self.secret = ""

    @property
    def auth_param(self) -> dict[str, str]:
        return {}


def _quiet_logger() -> logging.Logger:
    logger = logging.Logger("pagerduty.events_client")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger
