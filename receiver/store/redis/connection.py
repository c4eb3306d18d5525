"""Connecting to Redis, and the persistence settings the store's promises depend on.

Durability: a webhook is answered after its script returned, which is on disk only with
AOF and `appendfsync always`. Redis must not evict keys (`maxmemory-policy noeviction`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from receiver.store.base import StoreError
from receiver.store.redis.errors import scrub, store_errors

log = logging.getLogger("alert_router.store")

# Concurrent ingests share this many connections; more wait up to socket_timeout.
MAX_CONNECTIONS = 32


def connect(url: str, shown_url: str, secrets: Sequence[str], socket_timeout: float) -> Redis:
    """A client on a pool of `url`; nothing is sent yet, so an unreachable Redis is no
    error here."""
    try:
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=socket_timeout,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            # No silent retries: a script whose reply was lost may have run, and the
            # callers (Alertmanager, the pipeline loops) retry anyway.
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
            client_name="alert-router",
        )
    except ValueError as exc:
        raise StoreError(f"invalid Redis URL {shown_url}: {scrub(str(exc), secrets)}") from None
    return Redis.from_pool(pool)


async def check_persistence(client: Redis, shown_url: str, secrets: Sequence[str]) -> None:
    """Warn when Redis can lose what the store acknowledged (no AOF, or eviction)."""
    with store_errors(shown_url, secrets):
        persistence = await client.info("persistence")
        memory = await client.info("memory")
    if not int(persistence.get("aof_enabled", 0)):
        log.warning(
            "Redis runs without AOF: accepted alerts and dedup state are lost if Redis "
            "restarts; run it with appendonly yes and appendfsync always",
            extra={"store": shown_url},
        )
    policy = memory.get("maxmemory_policy", "noeviction")
    if policy != "noeviction":
        log.warning(
            "Redis may evict keys (maxmemory-policy is not noeviction): queued alerts "
            "can be lost under memory pressure",
            extra={"store": shown_url, "policy": policy},
        )
