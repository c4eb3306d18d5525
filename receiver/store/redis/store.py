"""The shared store for several replicas: one Redis (ALERT_ROUTER_STATE=redis://...).

Every operation that reads and then writes is one Lua script, so it is atomic in Redis and
costs one round trip (a whole webhook, a whole routing batch). Times are the callers'
clocks (`now`), kept as exact decimal strings; Redis' own clock only drives TTLs.

Keys, under `prefix` (P):

- `P:seen:<status>:<startsAt>:<fingerprint>`: received_at of the last accepted copy, with a
  TTL of the dedup window (so copies are forgotten without purge).
- The inbox: `P:inbox` (hash id -> alert JSON), `P:inbox:ready` (zset, score = id: claimable,
  in arrival order), `P:inbox:leased` (zset, score = lease expiry), `P:inbox:seq`.
- The outbox, one queue per destination D: `P:outbox:item:<id>` (hash: the notification,
  attempts, last error), `P:outbox:ready:D` (zset, score = id), `P:outbox:wait:D` (zset,
  score = when it becomes claimable: a lease expiry or a retry's not_before),
  `P:outbox:ids` (set, for the depth), `P:outbox:pending` (hash "<status> <ledger key>" ->
  id: at most one queued notification per destination, episode and status), `P:outbox:seq`,
  `P:outbox:destinations` (set: destinations that may have queued notifications).
- The ledger: `P:ledger:<D, URL-quoted>:<episode>` (hash firing_at, resolved_at, ref) with a
  TTL of the ledger retention, and `P:ledger:index` (zset, score = last write) for purge.
- Dead letters: `P:dead:item:<id>` (the outbox hash, renamed), `P:dead` (zset, score = id).

Queues are sorted sets with leases, not streams: claiming moves the due ids of the wait set
back to the ready set, then takes the lowest ids and parks them in the wait set scored
now + lease. Work claimed by a replica that died is claimable by any replica once its lease
expires; opening a store releases nothing, because the other replicas are alive.

Durability: a webhook is answered after its script returned, which is on disk only with
AOF and `appendfsync always`. Redis must not evict keys (`maxmemory-policy noeviction`).
One Redis primary holds everything: scripts name keys they compute, so Redis Cluster is
not supported.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError
from redis.retry import Retry

from receiver.dedup import SENDING, LedgerEntry
from receiver.models import Alert, CostContext, DedupReason, format_time
from receiver.store.base import (
    DeadLetter,
    Decision,
    InboxItem,
    IngestResult,
    OutboxItem,
    Planned,
    StoreError,
)

log = logging.getLogger("alert_router.store")

# Until purge() says otherwise, ledger keys live as long as the pipeline's default retention.
_DEFAULT_LEDGER_RETENTION = 5 * 86400.0
# Concurrent ingests share this many connections; more wait up to socket_timeout.
_MAX_CONNECTIONS = 32
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*")
# Ledger keys deleted per purge script, so one call never blocks Redis for long.
_PURGE_BATCH = 1000

# receiver.dedup.decide, in Lua, so that plan() decides and queues in one atomic step.
# firing_at / resolved_at are numbers or nil; pending_* are booleans.
DECIDE_LUA = f"""
local function decide(status, firing_at, resolved_at, pending_firing, pending_resolved,
                      repeat_interval, send_resolved, now)
  if status == 'firing' then
    if pending_firing then return '{DedupReason.PENDING}' end
    if firing_at == nil then return '{DedupReason.FIRST}' end
    if resolved_at ~= nil then return '{DedupReason.ALREADY_RESOLVED}' end
    if now - firing_at >= repeat_interval then return '{DedupReason.REPEAT}' end
    return '{DedupReason.ALREADY_NOTIFIED}'
  end
  if not send_resolved then return '{DedupReason.SEND_RESOLVED_OFF}' end
  if pending_resolved then return '{DedupReason.PENDING}' end
  if resolved_at ~= nil then return '{DedupReason.ALREADY_RESOLVED}' end
  if firing_at ~= nil or pending_firing then return '{DedupReason.RESOLVED}' end
  return '{DedupReason.NOT_NOTIFIED}'
end
local SENDING = {{{", ".join(f"['{r}'] = true" for r in sorted(SENDING))}}}
"""

# Moves ids whose lease or retry time has come from `wait` to `ready`, then leases the
# `limit` lowest ids of `ready` until `until_`. Scores are passed as strings, unrounded.
_CLAIM_LUA = """
local function claim(ready, wait, now, until_, limit)
  local due = redis.call('ZRANGEBYSCORE', wait, '-inf', now)
  for _, id in ipairs(due) do
    redis.call('ZADD', ready, id, id)
  end
  if #due > 0 then
    redis.call('ZREMRANGEBYSCORE', wait, '-inf', now)
  end
  local ids = redis.call('ZRANGE', ready, 0, limit - 1)
  for _, id in ipairs(ids) do
    redis.call('ZREM', ready, id)
    redis.call('ZADD', wait, until_, id)
  end
  return ids
end
"""

# Takes an outbox item off its queues and frees its pending marker (if still its own).
_RETIRE_LUA = """
local function unqueue(item_key, ids_key, pending_key, id)
  local f = redis.call('HMGET', item_key, 'ready', 'wait', 'pending')
  if f[1] then
    redis.call('ZREM', f[1], id)
    redis.call('ZREM', f[2], id)
    if redis.call('HGET', pending_key, f[3]) == id then
      redis.call('HDEL', pending_key, f[3])
    end
  end
  redis.call('SREM', ids_key, id)
  return f[1]
end
"""

# KEYS: inbox, inbox ready, inbox seq, inbox episodes, inbox firing.
# ARGV: now, window, window ms, (seen key, alert, status, episode)...
_INGEST = """
local now, window, window_ms = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local accepted, duplicates = 0, 0
for i = 4, #ARGV, 4 do
  local seen = redis.call('GET', ARGV[i])
  if seen and now - tonumber(seen) < window then
    duplicates = duplicates + 1
  else
    if window_ms > 0 then
      redis.call('SET', ARGV[i], ARGV[1], 'PX', window_ms)
    end
    local id = redis.call('INCR', KEYS[3])
    redis.call('HSET', KEYS[1], id, ARGV[i + 1])
    redis.call('ZADD', KEYS[2], id, id)
    redis.call('HSET', KEYS[4], id, ARGV[i + 2] .. ' ' .. ARGV[i + 3])
    if ARGV[i + 2] == 'firing' then
      redis.call('HSET', KEYS[5], ARGV[i + 3], id)
    end
    accepted = accepted + 1
  end
end
return {accepted, duplicates}
"""

# KEYS: inbox, inbox ready, inbox leased, inbox episodes, inbox firing.
# ARGV: now, lease until, limit, recheck at.
_CLAIM_INBOX = (
    _CLAIM_LUA
    + """
local ids = claim(KEYS[2], KEYS[3], ARGV[1], ARGV[2], tonumber(ARGV[3]))
local claimed = {}
for _, id in ipairs(ids) do claimed[id] = true end
local out = {}
for _, id in ipairs(ids) do
  local alert = redis.call('HGET', KEYS[1], id)
  local deferred = false
  local tag = redis.call('HGET', KEYS[4], id)
  if alert and tag and string.sub(tag, 1, 9) == 'resolved ' then
    local fid = redis.call('HGET', KEYS[5], string.sub(tag, 10))
    if fid and not claimed[fid] and redis.call('HEXISTS', KEYS[1], fid) == 1 then
      -- Its firing is not routed yet (another replica holds it): look again shortly.
      deferred = true
      local at = redis.call('ZSCORE', KEYS[3], fid)
      redis.call('ZREM', KEYS[3], id)
      if at then
        redis.call('ZADD', KEYS[3], math.min(tonumber(at), tonumber(ARGV[4])), id)
      else
        redis.call('ZADD', KEYS[2], id, id)
      end
    end
  end
  if alert and not deferred then
    out[#out + 1] = {id, alert}
  elseif not alert then
    redis.call('ZREM', KEYS[3], id)
  end
end
return out
"""
)

# KEYS: outbox ready (D), outbox wait (D), pending.
# ARGV: now, lease until, limit, item key prefix, recheck at.
_CLAIM_OUTBOX = (
    _CLAIM_LUA
    + """
local ids = claim(KEYS[1], KEYS[2], ARGV[1], ARGV[2], tonumber(ARGV[3]))
local claimed = {}
for _, id in ipairs(ids) do claimed[id] = true end
local out = {}
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', ARGV[4] .. id, 'route', 'reason', 'body', 'attempts', 'ledger',
    'status')
  if f[1] then
    local fid = nil
    if f[6] == 'resolved' then
      fid = redis.call('HGET', KEYS[3], 'firing ' .. f[5])
    end
    if fid and fid ~= id and not claimed[fid] then
      -- Its firing is still queued (retrying, or leased by another replica): a resolve
      -- never overtakes it. Look again when the firing is due, or shortly.
      local at = redis.call('ZSCORE', KEYS[2], fid)
      redis.call('ZREM', KEYS[2], id)
      if at then
        redis.call('ZADD', KEYS[2], math.min(tonumber(at), tonumber(ARGV[5])), id)
      else
        redis.call('ZADD', KEYS[1], id, id)
      end
    else
      local ref = redis.call('HGET', f[5], 'ref')
      out[#out + 1] = {id, f[1], f[2], f[3], f[4], ref}
    end
  else
    redis.call('ZREM', KEYS[2], id)
  end
end
return out
"""
)

# KEYS: inbox, inbox ready, inbox leased, outbox seq, outbox ids, pending, inbox episodes,
# inbox firing, outbox destinations.
# ARGV: now, item key prefix, n inbox ids, inbox ids..., then per candidate: ledger key,
# ready key, wait key, destination, episode, status, repeat interval, send_resolved (1/0),
# route, body.
_PLAN = (
    DECIDE_LUA
    + """
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[3])
local reasons = {}
for i = 4 + n, #ARGV, 10 do
  local ledger, ready, wait = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local status = ARGV[i + 5]
  local entry = redis.call('HMGET', ledger, 'firing_at', 'resolved_at')
  local pending_firing = redis.call('HEXISTS', KEYS[6], 'firing ' .. ledger) == 1
  local pending_resolved = redis.call('HEXISTS', KEYS[6], 'resolved ' .. ledger) == 1
  local firing_at, resolved_at = nil, nil
  if entry[1] then firing_at = tonumber(entry[1]) end
  if entry[2] then resolved_at = tonumber(entry[2]) end
  local reason = decide(status, firing_at, resolved_at, pending_firing, pending_resolved,
    tonumber(ARGV[i + 6]), ARGV[i + 7] == '1', now)
  if SENDING[reason] then
    local id = redis.call('INCR', KEYS[4])
    local marker = status .. ' ' .. ledger
    redis.call('HSET', ARGV[2] .. id,
      'destination', ARGV[i + 3], 'episode', ARGV[i + 4], 'status', status,
      'route', ARGV[i + 8], 'reason', reason, 'body', ARGV[i + 9], 'attempts', 0,
      'ledger', ledger, 'ready', ready, 'wait', wait, 'pending', marker)
    redis.call('ZADD', ready, id, id)
    redis.call('SADD', KEYS[5], id)
    redis.call('HSET', KEYS[6], marker, id)
    redis.call('SADD', KEYS[9], ARGV[i + 3])
  end
  reasons[#reasons + 1] = reason
end
for i = 4, 3 + n do
  redis.call('HDEL', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[2], ARGV[i])
  redis.call('ZREM', KEYS[3], ARGV[i])
  local tag = redis.call('HGET', KEYS[7], ARGV[i])
  if tag and string.sub(tag, 1, 7) == 'firing ' then
    local ep = string.sub(tag, 8)
    if redis.call('HGET', KEYS[8], ep) == ARGV[i] then redis.call('HDEL', KEYS[8], ep) end
  end
  redis.call('HDEL', KEYS[7], ARGV[i])
end
return reasons
"""
)

# KEYS: outbox ids, pending, ledger index. ARGV: now, ledger TTL ms, item key prefix, then
# per item: id, ledger key, firing (1/0), ref JSON or ''.
_DELIVERED = (
    _RETIRE_LUA
    + """
local ttl = tonumber(ARGV[2])
for i = 4, #ARGV, 4 do
  local id, ledger = ARGV[i], ARGV[i + 1]
  if ARGV[i + 2] == '1' then
    redis.call('HSET', ledger, 'firing_at', ARGV[1])
    if ARGV[i + 3] ~= '' then
      redis.call('HSET', ledger, 'ref', ARGV[i + 3])
    end
  else
    redis.call('HSET', ledger, 'resolved_at', ARGV[1])
  end
  -- The index scores the later of the two times, as SQLite's purge compares.
  local times = redis.call('HMGET', ledger, 'firing_at', 'resolved_at')
  local last = ARGV[1]
  for j = 1, 2 do
    if times[j] and tonumber(times[j]) > tonumber(last) then last = times[j] end
  end
  redis.call('ZADD', KEYS[3], last, ledger)
  if ttl > 0 then
    redis.call('PEXPIRE', ledger, ttl)
  end
  local item = ARGV[3] .. id
  unqueue(item, KEYS[1], KEYS[2], id)
  redis.call('DEL', item)
end
return 0
"""
)

# KEYS: none. ARGV: not_before, error, item key prefix, ids...
_RESCHEDULE = """
for i = 4, #ARGV do
  local item = ARGV[3] .. ARGV[i]
  local f = redis.call('HMGET', item, 'ready', 'wait')
  if f[1] then
    redis.call('HINCRBY', item, 'attempts', 1)
    redis.call('HSET', item, 'error', ARGV[2])
    redis.call('ZREM', f[1], ARGV[i])
    redis.call('ZADD', f[2], ARGV[1], ARGV[i])
  end
end
return 0
"""

# KEYS: outbox ids, pending, dead, dead seq. ARGV: now, error, item prefix, dead prefix, ids...
_DEAD_LETTER = (
    _RETIRE_LUA
    + """
for i = 5, #ARGV do
  local id = ARGV[i]
  local item = ARGV[3] .. id
  if unqueue(item, KEYS[1], KEYS[2], id) then
    local dead = redis.call('INCR', KEYS[4])
    local key = ARGV[4] .. dead
    redis.call('RENAME', item, key)
    redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('HSET', key, 'error', ARGV[2], 'failed_at', ARGV[1])
    redis.call('ZADD', KEYS[3], dead, dead)
  end
end
return 0
"""
)

# KEYS: dead. ARGV: dead prefix.
_DEAD_LETTERS = """
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local f = redis.call('HMGET', ARGV[1] .. id, 'destination', 'body', 'episode', 'status',
    'error', 'attempts', 'failed_at')
  if f[1] then
    out[#out + 1] = {id, f[1], f[2], f[3], f[4], f[5], f[6], f[7]}
  end
end
return out
"""

# KEYS: dead, outbox seq, outbox ids, pending, outbox destinations. ARGV: now, item prefix,
# dead prefix, all (1/0), ids...
_REPLAY = """
local ids = {}
if ARGV[4] == '1' then
  ids = redis.call('ZRANGE', KEYS[1], 0, -1)
else
  for i = 5, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local count = 0
for _, dead in ipairs(ids) do
  if redis.call('ZREM', KEYS[1], dead) == 1 then
    count = count + 1
    local key = ARGV[3] .. dead
    local f = redis.call('HMGET', key, 'pending', 'wait', 'destination')
    if f[1] and redis.call('HEXISTS', KEYS[4], f[1]) == 0 then
      local id = redis.call('INCR', KEYS[2])
      local item = ARGV[2] .. id
      redis.call('RENAME', key, item)
      redis.call('HSET', item, 'attempts', 0)
      redis.call('HDEL', item, 'error', 'failed_at')
      redis.call('ZADD', f[2], ARGV[1], id)
      redis.call('SADD', KEYS[3], id)
      redis.call('HSET', KEYS[4], f[1], id)
      if f[3] then redis.call('SADD', KEYS[5], f[3]) end
    else
      -- The same notification is queued already: replaying would send it twice.
      redis.call('DEL', key)
    end
  end
end
return count
"""

# KEYS: outbox destinations. ARGV: ready key prefix, wait key prefix. Forgets destinations
# whose queues are empty (Redis drops empty keys), in the same step as it looks.
_QUEUED = """
local out = {}
for _, d in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. d, ARGV[2] .. d) > 0 then
    out[#out + 1] = d
  else
    redis.call('SREM', KEYS[1], d)
  end
end
return out
"""

# KEYS: ledger index. ARGV: cutoff (exclusive), batch.
_PURGE = """
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[2])
for _, key in ipairs(old) do
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], key)
end
return #old
"""


def _num(value: float) -> str:
    """A float as text that Redis and Lua parse back to the same double."""
    if math.isfinite(value):
        return repr(float(value))
    # Lua's tonumber does not read "inf"; 1e308 compares the same against any time.
    return "1e308" if value > 0 else "-1e308"


def redact_url(url: str) -> str:
    """The URL with its password (userinfo or `?password=`) replaced by `****`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid Redis URL>"
    if parts.password is not None:
        userinfo, _, host = parts.netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        url = url.replace(parts.netloc, f"{user}:****@{host}", 1)
    return _QUERY_PASSWORD.sub(r"\1****", url)


def _secrets(url: str) -> list[str]:
    """Password texts the URL carries (raw and decoded), to scrub from error messages."""
    found: list[str] = []
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        raw = parts.netloc.rpartition("@")[0].partition(":")[2] if "@" in parts.netloc else ""
        found += [raw, parts.password or ""]
        found += [v for k, v in parse_qsl(parts.query) if k == "password"]
    return sorted({s for s in found if s}, key=len, reverse=True)


# KEYS: slot hash, pause hash. ARGV: destination, interval, now.
# The next free slot of a destination, shared by every replica; a pause (Retry-After)
# pushes it out.
_RESERVE_SEND = """
local at = tonumber(ARGV[3])
local slot = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local paused = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if slot > at then at = slot end
if paused > at then at = paused end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.6f', at + tonumber(ARGV[2])))
return string.format('%.6f', at)
"""

# KEYS: pause hash. ARGV: destination, until. Keeps the later of two pauses.
_PAUSE = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > current then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
"""


class _Keys:
    """Key names under one prefix (see the module docstring)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.inbox = f"{prefix}:inbox"
        self.inbox_ready = f"{prefix}:inbox:ready"
        self.inbox_leased = f"{prefix}:inbox:leased"
        self.inbox_seq = f"{prefix}:inbox:seq"
        self.inbox_episodes = f"{prefix}:inbox:episodes"
        self.inbox_firing = f"{prefix}:inbox:firing"
        self.outbox_item = f"{prefix}:outbox:item:"
        self.outbox_ids = f"{prefix}:outbox:ids"
        self.outbox_seq = f"{prefix}:outbox:seq"
        self.pending = f"{prefix}:outbox:pending"
        self.destinations = f"{prefix}:outbox:destinations"
        self.ledger_index = f"{prefix}:ledger:index"
        self.dead = f"{prefix}:dead"
        self.dead_item = f"{prefix}:dead:item:"
        self.dead_seq = f"{prefix}:dead:seq"
        self.ready_check = f"{prefix}:ready-check"
        self.send_slot = f"{prefix}:send:slot"
        self.send_pause = f"{prefix}:send:paused"

    def seen(self, alert: Alert) -> str:
        starts = format_time(alert.starts_at)
        return f"{self.prefix}:seen:{alert.status}:{starts}:{alert.fingerprint}"

    def ready(self, destination: str) -> str:
        return f"{self.prefix}:outbox:ready:{destination}"

    def wait(self, destination: str) -> str:
        return f"{self.prefix}:outbox:wait:{destination}"

    def ledger(self, destination: str, episode: str) -> str:
        # Quoted, so that a ':' in a destination name cannot make two keys collide.
        return f"{self.prefix}:ledger:{quote(destination, safe='')}:{episode}"


class RedisStore:
    """The store for several replicas (ALERT_ROUTER_STATE is a redis://, rediss:// or
    unix:// URL); any number of RedisStore instances may share one Redis."""

    def __init__(
        self, url: str, *, prefix: str = "alert-router", socket_timeout: float = 5.0
    ) -> None:
        self.url = redact_url(url)
        self._url = url
        self._secrets = _secrets(url)
        self._socket_timeout = socket_timeout
        self._keys = _Keys(prefix)
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
        try:
            pool = BlockingConnectionPool.from_url(
                self._url,
                max_connections=_MAX_CONNECTIONS,
                timeout=self._socket_timeout,
                socket_timeout=self._socket_timeout,
                socket_connect_timeout=self._socket_timeout,
                # No silent retries: a script whose reply was lost may have run, and the
                # callers (Alertmanager, the pipeline loops) retry anyway.
                retry=Retry(NoBackoff(), 0),
                decode_responses=True,
                client_name="alert-router",
            )
        except ValueError as exc:
            raise StoreError(f"invalid Redis URL {self.url}: {self._scrub(str(exc))}") from None
        self._client = Redis.from_pool(pool)
        client = self._client
        self._scripts = {
            name: client.register_script(source)
            for name, source in {
                "ingest": _INGEST,
                "claim_inbox": _CLAIM_INBOX,
                "claim_outbox": _CLAIM_OUTBOX,
                "plan": _PLAN,
                "delivered": _DELIVERED,
                "reschedule": _RESCHEDULE,
                "dead_letter": _DEAD_LETTER,
                "dead_letters": _DEAD_LETTERS,
                "replay": _REPLAY,
                "queued": _QUEUED,
                "purge": _PURGE,
                "reserve_send": _RESERVE_SEND,
                "pause": _PAUSE,
            }.items()
        }
        try:
            await self._check_config()
        except StoreError as exc:
            log.warning(
                "Redis store not usable at startup; ingest answers 503 until it is",
                extra={"error": str(exc)},
            )

    async def _check_config(self) -> None:
        with self._errors():
            persistence = await self._redis().info("persistence")
            memory = await self._redis().info("memory")
        if not int(persistence.get("aof_enabled", 0)):
            log.warning(
                "Redis runs without AOF: accepted alerts and dedup state are lost if Redis "
                "restarts; run it with appendonly yes and appendfsync always",
                extra={"store": self.url},
            )
        policy = memory.get("maxmemory_policy", "noeviction")
        if policy != "noeviction":
            log.warning(
                "Redis may evict keys (maxmemory-policy is not noeviction): queued alerts "
                "can be lost under memory pressure",
                extra={"store": self.url, "policy": policy},
            )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()

    # -- plumbing ------------------------------------------------------------------------

    def _redis(self) -> Redis:
        if self._client is None:
            raise StoreError("the Redis store is not open")
        return self._client

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "****")
        return text

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Redis errors (unreachable, timeouts, MISCONF, READONLY...) as StoreError, with
        no password in the message; the cause is dropped because its text may hold one."""
        try:
            yield
        except (RedisError, OSError) as exc:
            detail = self._scrub(str(exc)) or type(exc).__name__
            raise StoreError(
                f"Redis store {self.url} failed: {type(exc).__name__}: {detail}"
            ) from None

    async def _script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        script = self._scripts.get(name)
        if script is None or self._client is None:
            raise StoreError("the Redis store is not open")
        with self._errors():
            return await script(keys=list(keys), args=list(args))

    # -- the Store protocol --------------------------------------------------------------

    async def ingest(self, alerts: Sequence[Alert], now: float, window: float) -> IngestResult:
        if not alerts:
            return IngestResult(0, 0)
        k = self._keys
        args: list[Any] = [_num(now), _num(window), max(0, math.ceil(window * 1000))]
        for alert in alerts:
            args += [
                k.seen(alert),
                orjson.dumps({"alert": alert.to_json(), "received_at": now}),
                alert.status,
                alert.episode,
            ]
        accepted, duplicates = await self._script(
            "ingest", [k.inbox, k.inbox_ready, k.inbox_seq, k.inbox_episodes, k.inbox_firing], args
        )
        return IngestResult(int(accepted), int(duplicates))

    async def claim_inbox(self, limit: int, now: float, lease: float) -> list[InboxItem]:
        if limit <= 0:
            return []
        k = self._keys
        rows = await self._script(
            "claim_inbox",
            [k.inbox, k.inbox_ready, k.inbox_leased, k.inbox_episodes, k.inbox_firing],
            [_num(now), _num(now + lease), limit, _num(now + 1.0)],
        )
        items = []
        for id_, payload in rows:
            data = orjson.loads(payload)
            items.append(InboxItem(id_, Alert.from_json(data["alert"]), float(data["received_at"])))
        return items

    async def plan(
        self, inbox_ids: Sequence[str], planned: Sequence[Planned], now: float
    ) -> list[Decision]:
        k = self._keys
        args: list[Any] = [_num(now), k.outbox_item, len(inbox_ids), *inbox_ids]
        for item in planned:
            body = {
                "alert": item.alert.to_json(),
                "context": item.context.to_json(),
                "received_at": item.received_at,
            }
            args += [
                k.ledger(item.destination, item.alert.episode),
                k.ready(item.destination),
                k.wait(item.destination),
                item.destination,
                item.alert.episode,
                item.alert.status,
                _num(item.repeat_interval),
                "1" if item.send_resolved else "0",
                item.route,
                orjson.dumps(body),
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
                pipe.zcount(k.wait(destination), "-inf", _num(now))
                ready, due = await pipe.execute()
        count = int(ready) + int(due)  # O(log n) either way
        return count if at_most is None else min(count, at_most)

    async def claim_outbox(
        self, destination: str, limit: int, now: float, lease: float
    ) -> list[OutboxItem]:
        if limit <= 0:
            return []
        k = self._keys
        rows = await self._script(
            "claim_outbox",
            [k.ready(destination), k.wait(destination), k.pending],
            [_num(now), _num(now + lease), limit, k.outbox_item, _num(now + 1.0)],
        )
        items = []
        for id_, route, reason, body, attempts, ref in rows:
            data = orjson.loads(body)
            items.append(
                OutboxItem(
                    id=id_,
                    destination=destination,
                    route=route,
                    reason=DedupReason(reason),
                    alert=Alert.from_json(data["alert"]),
                    context=CostContext.from_json(data["context"]),
                    received_at=float(data["received_at"]),
                    attempts=int(attempts),
                    ref=orjson.loads(ref) if ref else None,
                )
            )
        return items

    async def delivered(
        self, items: Sequence[OutboxItem], refs: Sequence[Mapping[str, str] | None], now: float
    ) -> None:
        if not items:
            return
        k = self._keys
        ttl = max(0, math.ceil(self._ledger_ttl * 1000))
        args: list[Any] = [_num(now), ttl, k.outbox_item]
        for item, ref in zip(items, refs, strict=True):
            args += [
                item.id,
                k.ledger(item.destination, item.alert.episode),
                "1" if item.alert.firing else "0",
                orjson.dumps(dict(ref)) if ref else "",
            ]
        await self._script("delivered", [k.outbox_ids, k.pending, k.ledger_index], args)

    async def reschedule(self, items: Sequence[OutboxItem], not_before: float, error: str) -> None:
        if not items:
            return
        args = [_num(not_before), error, self._keys.outbox_item, *(item.id for item in items)]
        await self._script("reschedule", [], args)

    async def dead_letter(self, items: Sequence[OutboxItem], error: str, now: float) -> None:
        if not items:
            return
        k = self._keys
        await self._script(
            "dead_letter",
            [k.outbox_ids, k.pending, k.dead, k.dead_seq],
            [_num(now), error, k.outbox_item, k.dead_item, *(item.id for item in items)],
        )

    async def dead_letters(self) -> list[DeadLetter]:
        k = self._keys
        rows = await self._script("dead_letters", [k.dead], [k.dead_item])
        return [
            DeadLetter(
                id=id_,
                destination=destination,
                alertname=str(orjson.loads(body)["alert"]["labels"].get("alertname", "")),
                episode=episode,
                status=status,
                error=error,
                attempts=int(attempts),
                failed_at=float(failed_at),
            )
            for id_, destination, body, episode, status, error, attempts, failed_at in rows
        ]

    async def replay_dead_letters(self, ids: Sequence[str] | None, now: float) -> int:
        k = self._keys
        args = [_num(now), k.outbox_item, k.dead_item, "1" if ids is None else "0", *(ids or ())]
        count = await self._script(
            "replay", [k.dead, k.outbox_seq, k.outbox_ids, k.pending, k.destinations], args
        )
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
            orjson.loads(ref) if ref else None,
        )

    async def depths(self) -> dict[str, int]:
        k = self._keys
        with self._errors():
            async with self._redis().pipeline(transaction=True) as pipe:
                pipe.hlen(k.inbox)
                pipe.scard(k.outbox_ids)
                pipe.zcard(k.dead)
                inbox, outbox, dead = await pipe.execute()
        return {"inbox": int(inbox), "outbox": int(outbox), "dead_letters": int(dead)}

    async def queued_destinations(self) -> set[str]:
        k = self._keys
        if not self._destinations_known:
            # Queues written before the destinations set existed: found once by their
            # key names (a scan of the whole keyspace), then the set is kept by plan.
            with self._errors():
                for base in (k.ready(""), k.wait("")):
                    pattern = _glob_escape(base) + "*"
                    async for key in self._redis().scan_iter(match=pattern, count=1000):
                        name = key.decode() if isinstance(key, bytes) else str(key)
                        await self._redis().sadd(k.destinations, name[len(base) :])
            self._destinations_known = True
        found = await self._script("queued", [k.destinations], [k.ready(""), k.wait("")])
        return {d.decode() if isinstance(d, bytes) else str(d) for d in found}

    async def check_writable(self) -> None:
        # A real write: MISCONF (persistence failing), READONLY (a replica), OOM and
        # NOREPLICAS refuse it as they would refuse ingest.
        with self._errors():
            await self._redis().set(self._keys.ready_check, "1", px=60_000)

    async def purge(self, now: float, window: float, ledger_retention: float) -> None:
        # Ingest copies expire by their TTL (the dedup window). Ledger keys carry a TTL of
        # the retention too; the index makes purge exact for the caller's clock.
        self._ledger_ttl = ledger_retention
        cutoff = _num(now - ledger_retention)
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


def _glob_escape(text: str) -> str:
    """`text` matched literally in a Redis SCAN pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
