"""What every part of the Redis store uses to talk to Redis: the client, the registered
Lua scripts, errors named without secrets, the read-only guard, and the key layout.

RedisStore and its report and history halves (`reports.py`, `history.py`) inherit it, so
each runs its scripts and commands the same way.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from receiver.store.base import ReadOnlyStoreError, StoreError
from receiver.store.redis import scripts
from receiver.store.redis.errors import store_errors
from receiver.store.redis.keys import Keys


def num(value: float) -> str:
    """A float as text that Redis and Lua parse back to the same double."""
    if math.isfinite(value):
        return repr(float(value))
    # Lua's tonumber does not read "inf"; 1e308 compares the same against any time.
    return "1e308" if value > 0 else "-1e308"


class RedisPlumbing:
    """The connection state RedisStore sets up, and the calls made through it."""

    # The URL with its password redacted (for errors and logs), and the secrets it holds.
    url: str
    read_only: bool
    _secrets: Sequence[str]
    _keys: Keys
    _client: Redis | None
    _scripts: dict[str, AsyncScript]

    def _redis(self) -> Redis:
        if self._client is None:
            raise StoreError("the Redis store is not open")
        return self._client

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return store_errors(self.url, self._secrets)

    def _writable(self) -> None:
        if self.read_only:
            raise ReadOnlyStoreError

    async def _script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if name not in scripts.READ_ONLY:
            self._writable()
        script = self._scripts.get(name)
        if script is None or self._client is None:
            raise StoreError("the Redis store is not open")
        with self._errors():
            return await script(keys=list(keys), args=list(args))
