"""read_body: the one body-limit reader of the router's endpoints."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from receiver.asgi import BodyTooLarge, ClientDisconnected, read_body


def receiver_of(*messages: dict[str, Any]) -> tuple[Callable[[], Awaitable[Any]], list[int]]:
    """An ASGI receive callable that yields `messages`, and a count of how many were read."""
    read = [0]

    async def receive() -> Any:
        message = messages[read[0]]
        read[0] += 1
        return message

    return receive, read


def chunk(body: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.request", "body": body, "more_body": more}


async def test_reads_a_body_in_chunks() -> None:
    receive, _ = receiver_of(chunk(b"ab", True), chunk(b"", True), chunk(b"cd"))
    assert await read_body(receive, 4, None) == b"abcd"


async def test_a_body_at_the_limit_is_accepted() -> None:
    receive, _ = receiver_of(chunk(b"x" * 10))
    assert await read_body(receive, 10, "10") == b"x" * 10


async def test_declared_length_over_the_limit_reads_nothing() -> None:
    receive, read = receiver_of(chunk(b"x" * 11))
    with pytest.raises(BodyTooLarge):
        await read_body(receive, 10, "11")
    assert read[0] == 0


async def test_a_lying_length_stops_at_the_chunk_that_crosses_the_limit() -> None:
    receive, read = receiver_of(chunk(b"x" * 6, True), chunk(b"x" * 6, True), chunk(b"x" * 6))
    with pytest.raises(BodyTooLarge):
        await read_body(receive, 10, "5")
    assert read[0] == 2


@pytest.mark.parametrize("declared", [None, "", "abc", "-1"])
async def test_unreadable_lengths_are_measured_instead(declared: str | None) -> None:
    receive, _ = receiver_of(chunk(b"x" * 11))
    with pytest.raises(BodyTooLarge):
        await read_body(receive, 10, declared)


async def test_a_disconnect_mid_body() -> None:
    receive, _ = receiver_of(chunk(b"ab", True), {"type": "http.disconnect"})
    with pytest.raises(ClientDisconnected):
        await read_body(receive, 10, None)


async def test_an_empty_body() -> None:
    receive, _ = receiver_of({"type": "http.request"})
    assert await read_body(receive, 10, "0") == b""
