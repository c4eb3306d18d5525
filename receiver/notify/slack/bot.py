"""Slack's Web API with a bot token: chat.postMessage, and on resolve chat.update of the
original message plus a reply in its thread; with `charts`, a firing alert's cost chart in
its message's thread (`alert_chart`)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient

from receiver.config.secrets import SecretSource
from receiver.models import Notification
from receiver.notify.base import NotifyError, Ref
from receiver.notify.slack.alert_chart import AlertCharts, ChartSource
from receiver.notify.slack.buttons import Buttons
from receiver.notify.slack.grafana import without_image
from receiver.notify.slack.render import (
    DIGEST_MAX,
    Message,
    message_ref,
    render_batch,
    reply_body,
    update_body,
)
from receiver.notify.slack.report import CHART_FILENAME, ReportMessage
from receiver.notify.slack.transport import (
    NO_SDK_RETRIES,
    ApiError,
    Session,
    api_error,
    check_batch,
    env_proxy,
    resolve,
    silent_logger,
    transport_error,
)

log = logging.getLogger("alert_router.notify.slack")

# chat.update answers meaning the original message is gone or can no longer be edited.
_MESSAGE_GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})
# chat.postMessage with thread_ts: the thread's parent is gone.
_THREAD_GONE = _MESSAGE_GONE | {"thread_not_found"}
# slack_sdk's files_upload_v2 reports a refused upload (step 2, the upload URL) only in the
# text of a SlackRequestError: "Failed to upload a file (status: 500, ...".
_UPLOAD_STATUS = re.compile(r"^Failed to upload a file \(status: (\d+)")
_CHART_ALT_TEXT = "Chart: cost per hour of the top services over the report's window"


# After auth.test failed, the workspace's URL (for permalinks) is asked again this much later.
_TEAM_URL_RETRY = 300.0


class ChartNotUploaded(NotifyError):
    """The report was posted (`ref`) but its chart was not: try `post_report` again with
    `posted=ref`, which uploads only the chart, so the report is never posted twice."""

    def __init__(
        self, message: str, ref: Ref, *, recoverable: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(message, recoverable=recoverable, retry_after=retry_after)
        self.ref = ref


class SlackBotNotifier:
    """Delivers with a bot token to one channel over one pooled connection; a resolve edits
    the original message and replies in its thread."""

    def __init__(
        self,
        name: str,
        token: SecretSource,
        channel: str,
        *,
        api_url: str,
        timeout: float = 10.0,
        buttons: Buttons | None = None,
        charts: ChartSource | None = None,
    ) -> None:
        """`buttons`: what firing messages of this destination offer (None: no buttons);
        `charts`: where the cost charts of its firing alerts come from (None: no charts)."""
        self.name = name
        self.channel = channel
        self.buttons = buttons
        self._token = token
        self._api_url = api_url
        self._timeout = timeout
        self._session = Session(timeout)
        self._client: AsyncWebClient | None = None
        self._sdk_logger = silent_logger(f"{log.name}.sdk.{name}")
        self._charts = AlertCharts(name, charts, self._upload) if charts is not None else None
        # The workspace's URL (auth.test), for permalinks; asked once, when first needed.
        self._team_url: str | None = None
        self._team_url_retry = 0.0  # monotonic time before which auth.test is not asked

    def __repr__(self) -> str:
        return f"SlackBotNotifier({self.name!r}, token={self._token!r}, channel={self.channel!r})"

    @property
    def max_batch(self) -> int:
        return DIGEST_MAX

    def render(self, batch: Sequence[Notification]) -> list[dict[str, Any]]:
        if not batch:
            return []
        if len(batch) > 1:
            return [self._post_body(render_batch(batch))]
        notification = batch[0]
        ref = message_ref(notification)
        if ref is None:
            return [self._post_body(render_batch(batch, self.buttons))]
        if ref.get("kind") == "digest":
            return [reply_body(notification, ref, broadcast=True)]
        return [update_body(notification, ref), reply_body(notification, ref, broadcast=False)]

    async def aclose(self) -> None:
        if self._charts is not None:
            await self._charts.aclose()  # they upload through the session closed below
        self._client = None
        await self._session.aclose()

    async def notify(self, batch: Sequence[Notification]) -> Sequence[Ref | None]:
        check_batch(batch, self.max_batch)
        if not batch:
            return []
        if len(batch) > 1:
            posted = await self._post(self._post_body(render_batch(batch)))
            # Each alert of a digest refers to the digest; a later resolve replies in its
            # thread rather than overwriting the other alerts listed there.
            digest: Ref = {**posted, "kind": "digest"}
            return [digest] * len(batch)
        notification = batch[0]
        ref = message_ref(notification)
        if ref is None:
            posted = await self._post(self._post_body(render_batch(batch, self.buttons)))
            if self._charts is not None:
                self._charts.posted(batch, posted)
            return [posted]
        if ref.get("kind") == "digest":
            try:
                await self._call("chat.postMessage", reply_body(notification, ref, broadcast=True))
            except ApiError as exc:
                if exc.code not in _THREAD_GONE:
                    raise
                return [await self._post(self._post_body(render_batch(batch)))]
            return [ref]
        try:
            await self._call("chat.update", update_body(notification, ref))
        except ApiError as exc:
            if exc.code not in _MESSAGE_GONE:
                raise
            log.info(
                "original message cannot be edited; posting the resolve",
                extra={
                    "destination": self.name,
                    "alertname": notification.alert.name,
                    "error": exc.code,
                },
            )
            return [await self._post(self._post_body(render_batch(batch)))]
        await self._call("chat.postMessage", reply_body(notification, ref, broadcast=False))
        return [ref]

    async def post_report(
        self,
        message: ReportMessage,
        chart_png: bytes | None = None,
        *,
        chart_title: str = "Cost report",
        posted: Ref | None = None,
    ) -> Ref:
        """Post a report (chat.postMessage) and upload its chart into the report's thread
        (files_upload_v2: files.getUploadURLExternal, the upload, files.completeUploadExternal
        with channel_id and thread_ts). The bot needs the files:write scope.

        Raises NotifyError when the report was not posted, ChartNotUploaded (with the
        report's ref) when only the chart failed; `posted` is that ref on the next try.
        """
        ref = posted if posted is not None else await self._post(self._report_body(message))
        if chart_png is not None:
            try:
                await self._upload(ref, chart_png, chart_title)
            except NotifyError as exc:
                raise ChartNotUploaded(
                    str(exc), ref, recoverable=exc.recoverable, retry_after=exc.retry_after
                ) from None
        return {"channel": ref["channel"], "ts": ref["ts"], "kind": "report"}

    def render_report(self, message: ReportMessage) -> dict[str, Any]:
        """The chat.postMessage body `post_report` sends (for dry-run)."""
        return self._report_body(message)

    def _report_body(self, message: ReportMessage) -> dict[str, Any]:
        return {"channel": self.channel, **message.body()}

    async def _upload(
        self,
        ref: Ref,
        png: bytes,
        title: str,
        *,
        filename: str = CHART_FILENAME,
        alt_text: str = _CHART_ALT_TEXT,
    ) -> None:
        """Upload `png` into the thread of message `ref`; raises NotifyError."""
        where = f"slack bot {self.name}: files_upload_v2"
        secret = resolve(self._token, where)
        secrets = (secret,)
        try:
            await self._client_for(secret.reveal()).files_upload_v2(
                content=png,
                filename=filename,
                title=title,
                alt_txt=alt_text,
                channel=ref["channel"],
                thread_ts=ref["ts"],
            )
        except SlackApiError as exc:
            raise api_error(where, exc, secrets) from None
        except SlackRequestError as exc:
            found = _UPLOAD_STATUS.match(str(exc))
            if found is None:
                raise transport_error(where, exc, secrets) from None
            status = int(found.group(1))
            # The upload URL's answer: 5xx and 429 are the upload service's trouble.
            raise NotifyError(
                f"{where}: the upload URL answered HTTP {status}",
                recoverable=status >= 500 or status == 429,
            ) from None
        except Exception as exc:
            raise transport_error(where, exc, secrets) from None

    async def edit(self, channel: str, ts: str, message: Mapping[str, Any]) -> None:
        """Replace a message this bot posted (chat.update) with `message` (text, blocks,
        attachments). Raises NotifyError when Slack refuses or cannot be reached."""
        await self._call("chat.update", {"channel": channel, "ts": ts, **message})

    async def permalink(self, ref: Ref) -> str | None:
        """The link to a message this bot posted, built as Slack builds its permalinks
        (`<workspace URL>archives/<channel>/p<ts without the dot>`) from the workspace's
        URL, which auth.test answers once per notifier; None when it cannot be known."""
        channel, ts = ref.get("channel"), ref.get("ts")
        if not channel or not ts:
            return None
        if self._team_url is None:
            if time.monotonic() < self._team_url_retry:
                return None
            try:
                url = (await self._call_once("auth.test", {})).get("url")
            except NotifyError as exc:
                # Asked again later, not before every message while Slack fails.
                self._team_url_retry = time.monotonic() + _TEAM_URL_RETRY
                log.info("no permalink", extra={"destination": self.name, "error": str(exc)})
                return None
            if not isinstance(url, str) or not url.startswith("https://"):
                self._team_url_retry = time.monotonic() + _TEAM_URL_RETRY
                return None
            self._team_url = url if url.endswith("/") else url + "/"
        return f"{self._team_url}archives/{channel}/p{ts.replace('.', '')}"

    def _post_body(self, message: Message) -> dict[str, Any]:
        return {"channel": self.channel, **message.body()}

    async def _post(self, body: dict[str, Any]) -> Ref:
        response = await self._call("chat.postMessage", body)
        channel, ts = response.get("channel"), response.get("ts")
        if not isinstance(channel, str) or not isinstance(ts, str):
            raise NotifyError(
                f"slack bot {self.name}: chat.postMessage answered without channel and ts",
                recoverable=False,
            )
        return {"channel": channel, "ts": ts}

    async def _call(self, method: str, body: dict[str, Any]) -> Mapping[str, Any]:
        try:
            return await self._call_once(method, body)
        except ApiError as exc:
            bare = without_image(body) if exc.code == "invalid_blocks" else None
            if bare is None:
                raise
            # Slack could not download the image (it must be publicly reachable): the
            # message is worth more than its picture.
            log.warning(
                "slack refused the message with its image; sending it without",
                extra={"destination": self.name, "method": method, "error": exc.code},
            )
            return await self._call_once(method, bare)

    async def _call_once(self, method: str, body: dict[str, Any]) -> Mapping[str, Any]:
        where = f"slack bot {self.name}: {method}"
        secret = resolve(self._token, where)
        secrets = (secret,)
        try:
            client = self._client_for(secret.reveal())
            if method == "chat.update":
                response = await client.chat_update(**body)
            elif method == "auth.test":
                response = await client.auth_test()
            else:
                response = await client.chat_postMessage(**body)
        except SlackApiError as exc:
            raise api_error(where, exc, secrets) from None
        except Exception as exc:
            raise transport_error(where, exc, secrets) from None
        data = response.data
        return data if isinstance(data, dict) else {}

    def _client_for(self, token: str) -> AsyncWebClient:
        """The client for the token in force (a rotated token gets a new one); every
        client sends through the notifier's one session."""
        session = self._session.get()
        client = self._client
        if client is None or client.token != token or client.session is not session:
            client = AsyncWebClient(
                token=token,
                base_url=self._api_url,
                timeout=cast(int, self._timeout),  # slack_sdk says int; aiohttp takes seconds
                session=session,
                retry_handlers=NO_SDK_RETRIES,
                logger=self._sdk_logger,
            )
            # slack_sdk copied HTTPS_PROXY into `proxy`, ignoring NO_PROXY.
            client.proxy = env_proxy(self._api_url)
            self._client = client
        return client
