"""The Redis store's history: each alert episode's identity and events, and each
destination's last delivery and last error, shared by every replica.

A recorder's batch is one script (`lua/history_record.lua`): the meta fields set once, the
events appended and trimmed to the cap, the indexes and the destinations' states updated.
Reads are pipelines of plain commands, which a read-only store may send. Key layout:
`keys.py`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import orjson

from receiver.events import EpisodeMeta, Event, EventKind, Timeline, destination_news, dump_data
from receiver.store.base import HISTORY_EVENTS_PER_EPISODE, DestinationState
from receiver.store.redis.keys import Keys, history_member, history_pair
from receiver.store.redis.plumbing import RedisPlumbing, num

# Episodes forgotten per purge script, so one call never blocks Redis for long.
_PURGE_BATCH = 1000
# Batches with more events than this are encoded off the event loop.
_INLINE_EVENTS = 256
_KINDS = {kind.value: kind for kind in EventKind}
_META_FIELDS = ("alertname", "labels", "source", "started_at", "last_at")


class HistoryLog(RedisPlumbing):
    """The history half of RedisStore."""

    async def record_history(self, metas: Sequence[EpisodeMeta], events: Sequence[Event]) -> None:
        self._writable()
        if not metas and not events:
            return
        if len(events) > _INLINE_EVENTS:
            # A big batch is encoded in a thread: the event loop answers webhooks meanwhile.
            args = await asyncio.to_thread(_record_args, self._keys, metas, events)
        else:
            args = _record_args(self._keys, metas, events)
        k = self._keys
        await self._script("history_record", [k.history_recent, k.history_dest], args)

    async def recent_episodes(
        self, since: float, limit: int, before: float | None = None
    ) -> list[tuple[EpisodeMeta, float]]:
        if limit <= 0:
            return []
        k = self._keys
        high = "+inf" if before is None else f"({num(before)}"
        with self._errors():
            found_members = await self._redis().zrevrangebyscore(
                k.history_recent, high, num(since), start=0, num=limit
            )
            # Text: the client decodes replies.
            members = [str(member) for member in found_members]
            rows = await self._metas(members)
        found = []
        for member, row in zip(members, rows, strict=True):
            meta = _meta(member, row)
            if meta is not None:
                found.append((meta, float(row[-1] or 0.0)))
        return found

    async def timelines(self, episodes: Sequence[tuple[str, str]]) -> list[Timeline]:
        if not episodes:
            return []
        k = self._keys
        members = [history_member(fingerprint, episode) for fingerprint, episode in episodes]
        with self._errors():
            async with self._redis().pipeline(transaction=True) as pipe:
                for member in members:
                    pipe.hmget(k.history_meta + member, _META_FIELDS)
                    pipe.lrange(k.history_events + member, 0, -1)
                replies = await pipe.execute()
        found = []
        for i, member in enumerate(members):
            row, events = replies[2 * i], replies[2 * i + 1]
            meta = _meta(member, row)
            if meta is not None:
                found.append(Timeline(meta, _load_events(meta, events), float(row[-1] or 0.0)))
        return found

    async def alert_timelines(self, fingerprint: str) -> list[Timeline]:
        with self._errors():
            episodes = await self._redis().zrevrange(
                self._keys.history_alert_key(fingerprint), 0, -1
            )
        return await self.timelines([(fingerprint, str(episode)) for episode in episodes])

    async def destination_states(self) -> dict[str, DestinationState]:
        k = self._keys
        with self._errors():
            async with self._redis().pipeline(transaction=True) as pipe:
                pipe.hgetall(k.history_dest)
                pipe.hgetall(k.send_pause)
                known, paused = await pipe.execute()
        states = {}
        for destination, raw in known.items():
            state = orjson.loads(raw)
            states[destination] = DestinationState(
                _float(state.get("delivered_at")), state.get("error"), _float(state.get("error_at"))
            )
        now = time.time()
        for destination, text in paused.items():
            until = float(text)
            if until > now:
                state = states.get(destination, DestinationState())
                states[destination] = DestinationState(
                    state.last_delivered_at, state.last_error, state.last_error_at, until
                )
        return states

    async def purge_history(self, before: float, max_episodes: int) -> int:
        k = self._keys
        args = [
            num(before),
            max(max_episodes, 0),
            _PURGE_BATCH,
            k.history_meta,
            k.history_events,
            k.history_alert,
        ]
        total = 0
        while True:
            forgotten = int(await self._script("history_purge", [k.history_recent], args))
            total += forgotten
            if forgotten < _PURGE_BATCH:
                return total

    async def _metas(self, members: Sequence[str]) -> list[list[str | None]]:
        if not members:
            return []
        async with self._redis().pipeline(transaction=True) as pipe:
            for member in members:
                pipe.hmget(self._keys.history_meta + member, _META_FIELDS)
            rows: list[list[str | None]] = await pipe.execute()
        return rows


def _record_args(keys: Keys, metas: Sequence[EpisodeMeta], events: Sequence[Event]) -> list[Any]:
    """The arguments of lua/history_record.lua for one batch."""
    episodes = _by_episode(metas, events)
    args: list[Any] = [HISTORY_EVENTS_PER_EPISODE, keys.history_meta, keys.history_events]
    args.append(len(episodes))
    for (fingerprint, episode), (meta, batch) in episodes.items():
        if batch:
            first, last = min(e.at for e in batch), max(e.at for e in batch)
        else:
            # A meta without events in the batch: the episode changed when it started.
            assert meta is not None
            first = last = meta.started_at
        header = [
            history_member(fingerprint, episode),
            keys.history_alert_key(fingerprint),
            episode,
            num(first),
            num(last),
            *_meta_fields(meta),
        ]
        args.append(orjson.dumps(header))
        # Only the latest `cap` can be kept: the script pushes no more than that.
        args.append(b"\n".join(_dump_event(e) for e in batch[-HISTORY_EVENTS_PER_EPISODE:]))
    news = [
        [
            n.destination,
            "" if n.delivered_at is None else num(n.delivered_at),
            "" if n.error_at is None else num(n.error_at),
            n.error or "",
        ]
        for n in destination_news(events)
    ]
    args.append(orjson.dumps(news))
    return args


def _by_episode(
    metas: Sequence[EpisodeMeta], events: Sequence[Event]
) -> dict[tuple[str, str], tuple[EpisodeMeta | None, list[Event]]]:
    """The batch per episode: its first meta (set-if-absent within a batch too) and its
    events in the order recorded."""
    firsts: dict[tuple[str, str], EpisodeMeta] = {}
    for meta in metas:
        firsts.setdefault((meta.fingerprint, meta.episode), meta)
    grouped: dict[tuple[str, str], list[Event]] = {}
    for event in events:
        grouped.setdefault((event.fingerprint, event.episode), []).append(event)
    return {
        key: (firsts.get(key), grouped.get(key, [])) for key in dict.fromkeys([*grouped, *firsts])
    }


def _meta_fields(meta: EpisodeMeta | None) -> list[str]:
    if meta is None:
        return ["0", "", "", "", ""]
    labels = dump_data(meta.labels).decode()
    return ["1", meta.alertname, labels, meta.source, num(meta.started_at)]


def _dump_event(event: Event) -> bytes:
    data = event.data if isinstance(event.data, dict) else dict(event.data)
    value = {"at": event.at, "kind": event.kind.value, "destination": event.destination}
    return dump_data({**value, "data": data})


def _meta(member: str, row: Sequence[str | None]) -> EpisodeMeta | None:
    """The meta hash's fields as an EpisodeMeta; None for an episode not (or no longer)
    kept. An episode recorded before its meta has only last_at (and first_at)."""
    alertname, labels, source, started_at, last_at = row
    if last_at is None:
        return None
    fingerprint, episode = history_pair(member)
    return EpisodeMeta(
        fingerprint=fingerprint,
        episode=episode,
        alertname=alertname or "",
        labels=orjson.loads(labels) if labels else {},
        source=source or "",
        started_at=float(started_at) if started_at else 0.0,
    )


def _load_events(meta: EpisodeMeta, rows: Sequence[str]) -> list[Event]:
    events = []
    for row in rows:
        value = orjson.loads(row)
        kind = _KINDS.get(value["kind"])
        # None: a kind a newer replica wrote, which this version cannot show.
        if kind is not None:
            events.append(
                Event(
                    value["at"],
                    meta.fingerprint,
                    meta.episode,
                    kind,
                    value["data"],
                    value["destination"],
                )
            )
    # Oldest first; replicas append their batches in the order they flush them.
    events.sort(key=lambda e: e.at)
    return events


def _float(text: str | None) -> float | None:
    return None if text is None else float(text)
