"""Slack incoming webhooks: one message per notification or digest; a resolve is a new one."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

from slack_sdk.webhook.async_client import AsyncWebhookClient

from receiver.config.secrets import SecretSource
from receiver.models import Notification
from receiver.notify.base import NotifyError, Ref
from receiver.notify.slack.grafana import without_image
from receiver.notify.slack.render import DIGEST_MAX, render_batch
from receiver.notify.slack.report import ReportMessage
from receiver.notify.slack.transport import (
    NO_SDK_RETRIES,
    Session,
    answer_text,
    check_batch,
    env_proxy,
    resolve,
    retry_after,
    silent_logger,
    transport_error,
    url_secrets,
)

log = logging.getLogger("alert_router.notify.slack")


class _InvalidBlocks(NotifyError):
    """Slack's 400 invalid_blocks: among its causes, an image it could not download."""


class SlackWebhookNotifier:
    """Delivers to a Slack incoming webhook over one pooled connection."""

    def __init__(self, name: str, url: SecretSource, *, timeout: float = 10.0) -> None:
        self.name = name
        self._url = url
        self._timeout = timeout
        self._session = Session(timeout)
        self._client: AsyncWebhookClient | None = None
        self._sdk_logger = silent_logger(f"{log.name}.sdk.{name}")

    def __repr__(self) -> str:
        return f"SlackWebhookNotifier({self.name!r}, url={self._url!r})"

    @property
    def max_batch(self) -> int:
        return DIGEST_MAX

    def render(self, batch: Sequence[Notification]) -> list[dict[str, Any]]:
        if not batch:
            return []
        return [render_batch(batch).body()]

    async def aclose(self) -> None:
        self._client = None
        await self._session.aclose()

    async def notify(self, batch: Sequence[Notification]) -> Sequence[Ref | None]:
        check_batch(batch, self.max_batch)
        if not batch:
            return []
        await self._send(render_batch(batch).body())
        return [None] * len(batch)

    async def post_report(self, message: ReportMessage) -> Ref:
        """Post a report. Incoming webhooks cannot upload files: render the message with
        `report_message(report, graph_link=True)` so it links Prometheus' graph instead.
        Raises NotifyError as `notify` does."""
        await self._send_once(message.body())
        return {"kind": "report"}

    async def _send(self, body: dict[str, Any]) -> None:
        try:
            await self._send_once(body)
        except _InvalidBlocks:
            bare = without_image(body)
            if bare is None:
                raise
            # Slack could not download the image (it must be publicly reachable): the
            # message is worth more than its picture.
            log.warning(
                "slack refused the message with its image; sending it without",
                extra={"destination": self.name, "error": "invalid_blocks"},
            )
            await self._send_once(bare)

    async def _send_once(self, body: dict[str, Any]) -> None:
        where = f"slack webhook {self.name}"
        secret = resolve(self._url, where)
        secrets = url_secrets(secret)
        try:
            response = await self._client_for(secret.reveal()).send_dict(body)
        except Exception as exc:
            raise transport_error(where, exc, secrets) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        message = f"{where}: HTTP {status} {answer_text(str(response.body or ''), secrets)}"
        message = message.rstrip()
        if status == 429:
            # Slack: 429 with Retry-After (seconds) when over 1 message per second per webhook.
            after = retry_after(response.headers)
            raise NotifyError(message, recoverable=True, retry_after=after, status=status)
        if status >= 500 or status == 408:
            raise NotifyError(message, recoverable=True, status=status)
        if status == 400 and "invalid_blocks" in str(response.body or ""):
            raise _InvalidBlocks(message, recoverable=False, status=status)
        # Slack: 400 invalid_payload/no_text/invalid_blocks, 403 action_prohibited,
        # 404 channel_not_found/no_service, 410 channel_is_archived: sending again cannot help.
        raise NotifyError(message, recoverable=False, status=status)

    def _client_for(self, url: str) -> AsyncWebhookClient:
        """The client for the webhook URL in force (a rotated URL gets a new one); every
        client sends through the notifier's one session."""
        session = self._session.get()
        client = self._client
        if client is None or client.url != url or client.session is not session:
            client = AsyncWebhookClient(
                url,
                timeout=cast(int, self._timeout),  # slack_sdk says int; aiohttp takes seconds
                session=session,
                retry_handlers=NO_SDK_RETRIES,
                logger=self._sdk_logger,
            )
            # slack_sdk copied HTTPS_PROXY into `proxy`, ignoring NO_PROXY.
            client.proxy = env_proxy(url)
            self._client = client
        return client
