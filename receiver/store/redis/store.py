"""The shared store for several replicas: one Redis (ALERT_ROUTER_STATE=redis://...).

Every operation that reads and then writes is one Lua script (`lua/`, loaded by
`scripts.py`), so it is atomic in Redis and costs one round trip (a whole webhook, a whole
routing batch). Times are the callers' clocks (`now`), kept as exact decimal strings;
Redis' own clock only drives TTLs. The key layout is in `keys.py`.

Queues are sorted sets with leases, not streams: claiming moves the due ids of the wait set
back to the ready set, then takes the lowest ids and parks them in the wait set scored
now + lease, naming their owner (one per pipeline). The owner renews its leases while it
works and releases them when it stops; work claimed by a replica that died is claimable by
any replica once its lease expires; opening a store releases nothing, because the other
replicas are alive. A read-only store (`read_only=True`) sends Redis no write.

One Redis primary holds everything: scripts name keys they compute, so Redis Cluster is
not supported. Persistence: see `connection.py`.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from receiver.config.secrets import redact_url
from receiver.dedup import LedgerEntry
from receiver.models import Alert, DedupReason
from receiver.store import codec
from receiver.store.base import (
    REPORT_DEAD_LETTER,
    Claims,
    DeadLetter,
    Decision,
    InboxItem,
    IngestResult,
    OutboxItem,
    Planned,
    StoreError,
)
from receiver.store.redis import scripts
from receiver.store.redis.connection import check_persistence, connect
from receiver.store.redis.errors import url_secrets
from receiver.store.redis.history import HistoryLog
from receiver.store.redis.keys import Keys, scan_destinations
from receiver.store.redis.plumbing import num
from receiver.store.redis.reports import ReportQueue

log = logging.getLogger("alert_router.store")

# Until purge() says otherwise, ledger keys live as long as the pipeline's default retention.
_DEFAULT_LEDGER_RETENTION = 5 * 86400.0
# Ledger keys deleted per purge script, so one call never blocks Redis for long.
_PURGE_BATCH = 1000


class RedisStore(ReportQueue, HistoryLog):
    """The store for several replicas (ALERT_ROUTER_STATE is a redis://, rediss:// or
    unix:// URL); any number of RedisStore instances may share one Redis."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "alert-router",
        socket_timeout: float = 5.0,
        read_only: bool = False,
    ) -> None:
        self.url = redact_url(url)
        self.read_only = read_only
        self._url = url
        self._secrets = url_secrets(url)
        self._socket_timeout = socket_timeout
        self._keys = Keys(prefix)
        self._ledger_ttl = _DEFAULT_LEDGER_RETENTION
        self._client: Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        # Whether queues from before the destinations set have been looked for.
        self._destinations_known = False

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r})"

    async def open(self) -> None:
        """Connect and check Redis' persistence settings. An unreachable Redis is not an
        error here: ingest answers 503 and /readyz fails until it is back, instead of the
        replica crash-looping."""
        if self._client is not None:
            return
        self._client = connect(self._url, self.url, self._secrets, self._socket_timeout)
        self._scripts = scripts.register(self._client)
        try:
            await check_persistence(self._client, self.url, self._secrets)
        except StoreError as exc:
            log.warning(
                "Redis store not usable at startup; ingest answers 503 until it is",
                extra={"store": self.url, "error": str(exc)},
            )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()

    # -- the Store protocol --------------------------------------------------------------

    async def ingest(self, alerts: Sequence[Alert], now: float, window: float) -> IngestResult:
        if not alerts:
            return IngestResult(0, 0)
        k = self._keys
        args: list[Any] = [num(now), num(window), max(0, math.ceil(window * 1000))]
        for alert in alerts:
            args += [
                k.seen(alert),
                codec.dump_received(alert, now),
                alert.status,
                alert.episode,
            ]
        accepted, duplicates, flags = await self._script(
            "ingest", [k.inbox, k.inbox_ready, k.inbox_seq, k.inbox_episodes, k.inbox_firing], args
        )
        marks = flags.decode() if isinstance(flags, bytes) else str(flags)
        return IngestResult(int(accepted), int(duplicates), tuple(c == "1" for c in marks))

    async def claim_inbox(
        self, limit: int, now: float, lease: float, owner: str = ""
    ) -> list[InboxItem]:
        self._writable()
        if limit <= 0:
            return []
        k = self._keys
        rows = await self._script(
            "claim_inbox",
            [
                k.inbox,
                k.inbox_ready,
                k.inbox_leased,
                k.inbox_episodes,
                k.inbox_firing,
                k.inbox_owner,
            ],
            [num(now), num(now + lease), limit, num(now + 1.0), owner],
        )
        items = []
        for id_, payload, taken in rows:
            received = codec.load_received(payload)
            items.append(
                InboxItem(id_, received.alert, received.received_at, taken_over=bool(taken))
            )
        return items

    async def plan(
        self, inbox_ids: Sequence[str], planned: Sequence[Planned], now: float
    ) -> list[Decision]:
        k = self._keys
        args: list[Any] = [num(now), k.outbox_item, len(inbox_ids), *inbox_ids]
        for item in planned:
            args += [
                k.ledger(item.destination, item.alert.episode),
                k.ready(item.destination),
                k.wait(item.destination),
                item.destination,
                item.alert.episode,
                item.alert.status,
                num(item.repeat_interval),
                "1" if item.send_resolved else "0",
                item.route,
                codec.dump_notification(item.alert, item.context, item.received_at),
            ]
        reasons = await self._script(
            "plan",
            [
                k.inbox,
                k.inbox_ready,
                k.inbox_leased,
                k.outbox_seq,
                k.outbox_ids,
                k.pending,
                k.inbox_episodes,
                k.inbox_firing,
                k.destinations,
                k.inbox_owner,
            ],
            args,
        )
        return [
            Decision(item.destination, item.alert.episode, item.alert.status, DedupReason(reason))
            for item, reason in zip(planned, reasons, strict=True)
        ]

    async def ready_count(self, destination: str, now: float, at_most: int | None = None) -> int:
        k = self._keys
        with self._errors():
            async with self._redis().pipeline(transaction=True) as pipe:
                pipe.zcard(k.ready(destination))
                pipe.zcount(k.wait(destination), "-inf", num(now))
                ready, due = await pipe.execute()
        count = int(ready) + int(due)  # O(log n) either way
        return count if at_most is None else min(count, at_most)

    async def claim_outbox(
        self, destination: str, limit: int, now: float, lease: float, owner: str = ""
    ) -> list[OutboxItem]:
        self._writable()
        if limit <= 0:
            return []
        k = self._keys
        rows = await self._script(
            "claim_outbox",
            [k.ready(destination), k.wait(destination), k.pending],
            [num(now), num(now + lease), limit, k.outbox_item, num(now + 1.0), owner],
        )
        return [
            codec.outbox_item(
                item_id=id_,
                destination=destination,
                route=route,
                reason=reason,
                notification=codec.load_notification(body),
                attempts=attempts,
                ref=ref,
                taken_over=bool(taken),
            )
            for id_, route, reason, body, attempts, ref, taken in rows
        ]

    async def renew(self, owner: str, claims: Claims, now: float, lease: float) -> Claims:
        self._writable()
        if not claims:
            return Claims()
        k = self._keys
        args = [owner, num(now), num(now + lease), k.outbox_item, len(claims.inbox)]
        lost_inbox, lost_outbox = await self._script(
            "renew", [k.inbox_leased, k.inbox_owner], [*args, *claims.inbox, *claims.outbox]
        )
        return Claims(tuple(lost_inbox), tuple(lost_outbox))

    async def release(self, owner: str, claims: Claims) -> int:
        self._writable()
        if not claims:
            return 0
        k = self._keys
        count = await self._script(
            "release",
            [k.inbox, k.inbox_ready, k.inbox_leased, k.inbox_owner],
            [owner, k.outbox_item, len(claims.inbox), *claims.inbox, *claims.outbox],
        )
        return int(count)

    async def delivered(
        self, items: Sequence[OutboxItem], refs: Sequence[Mapping[str, str] | None], now: float
    ) -> None:
        if not items:
            return
        k = self._keys
        ttl = max(0, math.ceil(self._ledger_ttl * 1000))
        args: list[Any] = [num(now), ttl, k.outbox_item]
        for item, ref in zip(items, refs, strict=True):
            args += [
                item.id,
                k.ledger(item.destination, item.alert.episode),
                "1" if item.alert.firing else "0",
                codec.dump_ref(ref) or "",
            ]
        await self._script("delivered", [k.outbox_ids, k.pending, k.ledger_index], args)

    async def reschedule(self, items: Sequence[OutboxItem], not_before: float, error: str) -> None:
        if not items:
            return
        args = [num(not_before), error, self._keys.outbox_item, *(item.id for item in items)]
        await self._script("reschedule", [], args)

    async def dead_letter(self, items: Sequence[OutboxItem], error: str, now: float) -> None:
        if not items:
            return
        k = self._keys
        await self._script(
            "dead_letter",
            [k.outbox_ids, k.pending, k.dead, k.dead_seq],
            [num(now), error, k.outbox_item, k.dead_item, *(item.id for item in items)],
        )

    async def dead_letters(self) -> list[DeadLetter]:
        k = self._keys
        rows = await self._script("dead_letters", [k.dead], [k.dead_item])
        return [
            DeadLetter(
                id=id_,
                destination=destination,
                alertname=codec.load_notification(body).alert.name,
                episode=episode,
                status=status,
                error=error,
                attempts=int(attempts),
                failed_at=float(failed_at),
            )
            for id_, destination, body, episode, status, error, attempts, failed_at in rows
        ] + await self._report_dead_letters()

    async def replay_dead_letters(self, ids: Sequence[str] | None, now: float) -> int:
        self._writable()
        k = self._keys
        alerts = None if ids is None else [i for i in ids if not i.startswith(REPORT_DEAD_LETTER)]
        reports = None if ids is None else [i for i in ids if i.startswith(REPORT_DEAD_LETTER)]
        count = 0
        if alerts is None or alerts:
            args = [num(now), k.outbox_item, k.dead_item, "1" if alerts is None else "0"]
            count += await self._script(
                "replay",
                [k.dead, k.outbox_seq, k.outbox_ids, k.pending, k.destinations],
                [*args, *(alerts or ())],
            )
        if reports is None or reports:
            count += await self._replay_reports(reports)
        return int(count)

    async def ledger_entry(self, destination: str, episode: str) -> LedgerEntry | None:
        key = self._keys.ledger(destination, episode)
        with self._errors():
            firing_at, resolved_at, ref = await self._redis().hmget(
                key, ["firing_at", "resolved_at", "ref"]
            )
        if firing_at is None and resolved_at is None:
            return None
        return LedgerEntry(
            float(firing_at) if firing_at is not None else None,
            float(resolved_at) if resolved_at is not None else None,
            codec.load_ref(ref),
        )

    async def resolve_queued(self, destination: str, episode: str) -> bool:
        marker = self._keys.pending_marker("resolved", destination, episode)
        with self._errors():
            return bool(await self._redis().hexists(self._keys.pending, marker))

    async def depths(self) -> dict[str, int]:
        k = self._keys
        with self._errors():
            async with self._redis().pipeline(transaction=True) as pipe:
                pipe.hlen(k.inbox)
                pipe.scard(k.outbox_ids)
                pipe.zcard(k.dead)
                pipe.zcard(k.report_dead)
                inbox, outbox, dead, report_dead = await pipe.execute()
        return {
            "inbox": int(inbox),
            "outbox": int(outbox),
            "dead_letters": int(dead) + int(report_dead),
        }

    async def queued_destinations(self) -> set[str]:
        k = self._keys
        if self.read_only:
            with self._errors():
                return await scan_destinations(self._redis(), k)
        if not self._destinations_known:
            # Queues written before the destinations set existed: found once by their
            # key names, then the set is kept by plan.
            with self._errors():
                found = await scan_destinations(self._redis(), k)
                if found:
                    await self._redis().sadd(k.destinations, *found)
            self._destinations_known = True
        found = await self._script("queued", [k.destinations], [k.ready(""), k.wait("")])
        return {d.decode() if isinstance(d, bytes) else str(d) for d in found}

    async def check_writable(self) -> None:
        self._writable()
        # A real write: MISCONF (persistence failing), READONLY (a replica), OOM and
        # NOREPLICAS refuse it as they would refuse ingest.
        with self._errors():
            await self._redis().set(self._keys.ready_check, "1", px=60_000)

    async def purge(self, now: float, window: float, ledger_retention: float) -> None:
        self._writable()
        # Ingest copies expire by their TTL (the dedup window). Ledger keys carry a TTL of
        # the retention too; the index makes purge exact for the caller's clock.
        self._ledger_ttl = ledger_retention
        cutoff = num(now - ledger_retention)
        while True:
            count = await self._script("purge", [self._keys.ledger_index], [cutoff, _PURGE_BATCH])
            if int(count) < _PURGE_BATCH:
                return

    async def reserve_send(self, destination: str, interval: float, now: float) -> float:
        k = self._keys
        at = await self._script(
            "reserve_send", [k.send_slot, k.send_pause], [destination, repr(interval), repr(now)]
        )
        return float(at)

    async def pause_destination(self, destination: str, until: float) -> None:
        await self._script("pause", [self._keys.send_pause], [destination, repr(until)])
