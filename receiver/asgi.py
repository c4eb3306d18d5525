"""What the router's raw ASGI endpoints share: reading a request body within a limit."""

from __future__ import annotations

from starlette.types import Receive


class BodyTooLarge(Exception):
    """The body is over the limit (answer 413); what was read of it is dropped."""


class ClientDisconnected(Exception):
    """The client went away before the body was complete."""


async def read_body(receive: Receive, limit: int, declared: str | None) -> bytes:
    """The whole request body, refused past `limit` bytes without reading the rest.

    `declared` is the Content-Length header, if any: a body announced as too large is
    refused before a byte of it is read. A body that grows past the limit while arriving
    (chunked, or a lying Content-Length) is refused at the chunk that crosses it.
    """
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
