"""The fake Slack's upload flow answers as Slack does: files.getUploadURLExternal, the
upload URL, files.completeUploadExternal, and their errors. Driven by slack_sdk itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import (
    BOT_TOKEN,
    DEFAULT_CHANNEL,
    DEFAULT_CHANNEL_ID,
    Answer,
    SlackApiServer,
)

DATA = b"chart bytes " * 100


@pytest.fixture
async def client(slack_api: SlackApiServer) -> AsyncIterator[AsyncWebClient]:
    web = AsyncWebClient(token=BOT_TOKEN, base_url=slack_api.api_url, retry_handlers=[])
    yield web
    if web.session is not None:
        await web.session.close()


def error_of(caught: pytest.ExceptionInfo[SlackApiError]) -> Any:
    return caught.value.response["error"]


async def test_the_three_steps(client: AsyncWebClient, slack_api: SlackApiServer) -> None:
    posted = await client.chat_postMessage(channel=DEFAULT_CHANNEL, text="report")
    done = await client.files_upload_v2(
        content=DATA,
        filename="c.png",
        title="Chart",
        channel=DEFAULT_CHANNEL_ID,
        thread_ts=posted["ts"],
    )
    assert done["files"] == [{"id": "F0000000001", "title": "Chart"}]
    [upload] = slack_api.uploads()
    assert (upload.filename, upload.length, upload.data) == ("c.png", len(DATA), DATA)
    assert (upload.channel, upload.thread_ts) == (DEFAULT_CHANNEL_ID, posted["ts"])
    [answer] = [r.answer for r in slack_api.calls("upload")]
    assert answer == f"OK - {len(DATA)}"


async def test_invalid_auth(client: AsyncWebClient, slack_api: SlackApiServer) -> None:
    slack_api.tokens.clear()
    with pytest.raises(SlackApiError) as caught:
        await client.files_getUploadURLExternal(filename="c.png", length=10)
    assert error_of(caught) == "invalid_auth"


async def test_zero_length_is_a_missing_argument(client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as caught:
        await client.files_getUploadURLExternal(filename="c.png", length=0)
    assert error_of(caught) == "missing_argument"


async def test_not_in_channel(client: AsyncWebClient, slack_api: SlackApiServer) -> None:
    other = slack_api.add_channel("#elsewhere", member=False)
    with pytest.raises(SlackApiError) as caught:
        await client.files_upload_v2(content=DATA, filename="c.png", channel=other)
    assert error_of(caught) == "not_in_channel"


async def test_a_channel_name_is_not_a_channel_id(client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as caught:
        await client.files_upload_v2(content=DATA, filename="c.png", channel=DEFAULT_CHANNEL)
    assert error_of(caught) == "channel_not_found"


async def test_an_unknown_thread(client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as caught:
        await client.files_upload_v2(
            content=DATA, filename="c.png", channel=DEFAULT_CHANNEL_ID, thread_ts="1.000001"
        )
    assert error_of(caught) == "thread_not_found"


async def test_a_length_mismatch_is_refused(client: AsyncWebClient) -> None:
    reserved = await client.files_getUploadURLExternal(filename="c.png", length=len(DATA) + 1)
    async with httpx.AsyncClient() as http:
        answer = await http.post(reserved["upload_url"], content=DATA)
    assert answer.status_code == 400
    with pytest.raises(SlackApiError) as caught:
        await client.files_completeUploadExternal(files=[{"id": reserved["file_id"]}])
    assert error_of(caught) == "file_not_found"  # its bytes never arrived


async def test_slack_sdk_reports_a_refused_upload(
    client: AsyncWebClient, slack_api: SlackApiServer
) -> None:
    slack_api.script(
        Answer(503, "busy"),
        method="upload",
    )
    with pytest.raises(SlackRequestError, match=r"status: 503"):
        await client.files_upload_v2(content=DATA, filename="c.png", channel=DEFAULT_CHANNEL_ID)


@pytest.mark.parametrize("file_id", ["F9999999999", ""])
async def test_a_wrong_file_id(client: AsyncWebClient, file_id: str) -> None:
    with pytest.raises(SlackApiError) as caught:
        await client.files_completeUploadExternal(
            files=[{"id": file_id}], channel_id=DEFAULT_CHANNEL_ID
        )
    assert error_of(caught) == "file_not_found"


async def test_complete_only_once(client: AsyncWebClient) -> None:
    done = await client.files_upload_v2(content=DATA, filename="c.png", channel=DEFAULT_CHANNEL_ID)
    with pytest.raises(SlackApiError) as caught:
        await client.files_completeUploadExternal(files=[{"id": done["files"][0]["id"]}])
    assert error_of(caught) == "file_not_found"
