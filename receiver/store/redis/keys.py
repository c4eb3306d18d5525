"""The Redis store's key layout, under one prefix (P).

- `P:seen:<status>:<startsAt>:<fingerprint>`: received_at of the last accepted copy, with a
  TTL of the dedup window (so copies are forgotten without purge).
- The inbox: `P:inbox` (hash id -> alert JSON), `P:inbox:ready` (zset, score = id: claimable,
  in arrival order), `P:inbox:leased` (zset, score = lease expiry), `P:inbox:seq`,
  `P:inbox:episodes` (hash id -> "<status> <episode>") and `P:inbox:firing` (hash episode ->
  id of its firing), so a resolve is not routed before its firing, and `P:inbox:owner` (hash
  id -> the owner of its claim).
- The outbox, one queue per destination D: `P:outbox:item:<id>` (hash: the notification,
  attempts, last error), `P:outbox:ready:D` (zset, score = id), `P:outbox:wait:D` (zset,
  score = when it becomes claimable: a lease expiry or a retry's not_before; a claimed item's
  hash names its `owner`),
  `P:outbox:ids` (set, for the depth), `P:outbox:pending` (hash "<status> <ledger key>" ->
  id: at most one queued notification per destination, episode and status), `P:outbox:seq`,
  `P:outbox:destinations` (set: destinations that may have queued notifications).
- The ledger: `P:ledger:<D, URL-quoted>:<episode>` (hash firing_at, resolved_at, ref) with a
  TTL of the ledger retention, and `P:ledger:index` (zset, score = last write) for purge.
- Dead letters: `P:dead:item:<id>` (the outbox hash, renamed), `P:dead` (zset, score = id).
- Send pacing: `P:send:slot` and `P:send:paused` (hashes destination -> time).
- Report slots: `P:report:slot:<report, URL-quoted>:<time>` (the owner that took it, with a
  TTL: `P:report:last` outlives it), `P:report:last` (hash report -> its latest slot taken).
- Report sends: `P:report:send:<id>` (hash: report, slot_at, late, destination, attempts,
  owner, lease_until, posted, error, failed_at), `P:report:sends` (zset, score = when
  claimable), `P:report:dead` (zset, score = id: the sends kept as dead letters),
  `P:report:seq`.
- History, one episode E of an alert with fingerprint F (M = `<F, URL-quoted>:<E>`):
  `P:history:meta:M` (hash: alertname, labels JSON, source, started_at, each set once;
  first_at, last_at), `P:history:events:M` (list of event JSON, oldest first, trimmed to
  the latest HISTORY_EVENTS_PER_EPISODE), `P:history:recent` (zset M -> last_at),
  `P:history:alert:<F, URL-quoted>` (zset E -> started_at) and `P:history:dest` (hash
  destination -> JSON: delivered_at, error, error_at).

Keys already written by a running deployment keep these names: renaming one needs a
migration.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from redis.asyncio import Redis

from receiver.models import Alert


class Keys:
    """Key names under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.inbox = f"{prefix}:inbox"
        self.inbox_ready = f"{prefix}:inbox:ready"
        self.inbox_leased = f"{prefix}:inbox:leased"
        self.inbox_seq = f"{prefix}:inbox:seq"
        self.inbox_episodes = f"{prefix}:inbox:episodes"
        self.inbox_firing = f"{prefix}:inbox:firing"
        self.inbox_owner = f"{prefix}:inbox:owner"
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
        self.report_last = f"{prefix}:report:last"
        self.report_send = f"{prefix}:report:send:"
        self.report_sends = f"{prefix}:report:sends"
        self.report_dead = f"{prefix}:report:dead"
        self.report_seq = f"{prefix}:report:seq"
        self.history_meta = f"{prefix}:history:meta:"
        self.history_events = f"{prefix}:history:events:"
        self.history_alert = f"{prefix}:history:alert:"
        self.history_recent = f"{prefix}:history:recent"
        self.history_dest = f"{prefix}:history:dest"

    def seen(self, alert: Alert) -> str:
        starts = alert.started
        return f"{self.prefix}:seen:{alert.status}:{starts}:{alert.fingerprint}"

    def ready(self, destination: str) -> str:
        return f"{self.prefix}:outbox:ready:{destination}"

    def wait(self, destination: str) -> str:
        return f"{self.prefix}:outbox:wait:{destination}"

    def report_slot(self, report: str, slot_at: float) -> str:
        return f"{self.prefix}:report:slot:{quote(report, safe='')}:{slot_at!r}"

    def history_alert_key(self, fingerprint: str) -> str:
        return f"{self.history_alert}{quote(fingerprint, safe='')}"

    def ledger(self, destination: str, episode: str) -> str:
        # Quoted, so that a ':' in a destination name cannot make two keys collide.
        return f"{self.prefix}:ledger:{quote(destination, safe='')}:{episode}"

    def pending_marker(self, status: str, destination: str, episode: str) -> str:
        """The field of `pending` for a queued notification: `plan.lua` builds the same
        "<status> <ledger key>" (and keeps it in the item's hash, so that the scripts that
        unqueue the item free it); `tests/store/test_contract.py` holds both to it."""
        return f"{status} {self.ledger(destination, episode)}"


def history_member(fingerprint: str, episode: str) -> str:
    """An episode's name in the history's keys and indexes: the fingerprint quoted, so the
    first ':' ends it (lua/history_purge.lua splits there)."""
    return f"{quote(fingerprint, safe='')}:{episode}"


def history_pair(member: str) -> tuple[str, str]:
    """(fingerprint, episode) of a `history_member`."""
    fingerprint, _, episode = member.partition(":")
    return unquote(fingerprint), episode


def glob_escape(text: str) -> str:
    """`text` matched literally in a Redis SCAN pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


async def scan_destinations(client: Redis, keys: Keys) -> set[str]:
    """The destinations that have queue keys, found by the keys' names (a scan of the whole
    keyspace: for queues older than the destinations set, and for a read-only store)."""
    found: set[str] = set()
    for base in (keys.ready(""), keys.wait("")):
        pattern = glob_escape(base) + "*"
        async for key in client.scan_iter(match=pattern, count=1000):
            name = key.decode() if isinstance(key, bytes) else str(key)
            found.add(name[len(base) :])
    return found
