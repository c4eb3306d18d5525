"""Several replicas on one Redis behave as one router.

Two `python -m receiver serve` processes share ALERT_ROUTER_STATE=redis://... (Debian's
redis-server) and deliver for real (not dry-run) to the local Slack (incoming webhook) and
PagerDuty servers. What reaches those servers is counted per destination, alert and status:

- two Alertmanagers that do not gossip, each sending to its own replica: one notification
  per alert episode per destination, resolves paired with their triggers;
- SIGKILL of one replica mid-storm: the other finishes everything once the dead one's leases
  expire, and duplicates come only from what the dead replica had claimed; with the default
  lease, the failover time (SIGKILL to the last of its claimed alerts delivered);
- SIGTERM of one replica mid-storm (a rolling update): it releases its claims, and the other
  finishes everything without waiting for a lease;
- resolves that arrive while the dead replica still holds their firing: sent after it;
- Redis killed and restarted with AOF (appendfsync always) mid-run: nothing lost;
- Redis stopped: 503 on ingest and /readyz not ready; then recovery, and the queued work
  resumes.

Each test prints its figures (sent, delivered, duplicates, lost); run with `-s` to see them.
"""

from __future__ import annotations

import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from receiver.pipeline.tuning import Tuning
from receiver.samples import webhook
from tests.fakes.alertmanager import AlertmanagerFactory, alertmanager_factory_fixture, am_alert
from tests.fakes.pagerduty import ROUTING_KEY, FakePagerDuty
from tests.fakes.pagerduty import Answer as PagerDutyAnswer
from tests.fakes.redis import RedisServer
from tests.fakes.slack import SlackWebhookServer, min_interval, strings, webhook_error
from tests.service import TOKEN, ServerProcess, make_settings
from tests.support import HangingServer, wait_until

# The Alertmanager fixture, for this module (the root conftest does not register it).
__all__ = ["alertmanager_factory_fixture"]

AUTH = {"Authorization": f"Bearer {TOKEN}"}
# How long a replica keeps what it claimed (ALERT_ROUTER_LEASE_SECONDS): shorter than the
# default, so the survivor of a SIGKILL takes the dead replica's work over within seconds.
LEASE = 3.0
# The default lease, which the pipeline renews while it works (ALERT_ROUTER_LEASE_SECONDS'
# default is the pipeline's).
DEFAULT_LEASE = Tuning().lease
# A failover must finish within this long of a SIGKILL (beyond the vendors' rate limits,
# which these tests do not set).
FAILOVER_MAX = 15.0
# The Redis store's key prefix (receiver/store_redis.py), to look at claimed work.
PREFIX = "alert-router"
DESTINATIONS = ("hook", "pd")
# The alertnames the tests make: a tag and four digits.
NAME = re.compile(r"\b(?:Ha|Storm|Crash|Aof|Down|Fail|Roll)\d{4}\b")
# How a Slack message names an alert it notifies: "FIRING: X" (one alert), "*FIRING* X" (a
# digest line), "[FIRING] X" (the fallback text).
SLACK_NOTICE = re.compile(r"\b(FIRING|RESOLVED)\W+((?:Ha|Storm|Crash|Aof|Down|Fail|Roll)\d{4})\b")

RULES = """
destinations:
  hook:
    slack: {webhook_url: {secret: slack-webhook-url}, max_per_second: %(slack_rate)s}
  pd:
    pagerduty: {routing_key: {secret: pagerduty-key}, max_per_minute: 0}
routes:
  - name: page
    matchers: ['severity="critical"']
    to: [pd, hook]
  - name: finops
    matchers: ['team="finops"']
    to: [hook]
default: hook
"""
# Cost context, so that routing asks Prometheus (and waits for it, up to the timeout, for
# every batch: no cache).
CONTEXT = """
prometheus: {url: http://127.0.0.1:9, timeout: 5s, cache_ttl: 0s}
context:
  cost_per_hour: {query: 'sum by (service) (service_cost_per_hour)', unit: usd_per_hour}
"""

Key = tuple[str, str, str]  # (destination, alertname, status)


# -- the alerts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One alert of a test; its route follows from severity and team."""

    name: str
    severity: str
    team: str

    @property
    def labels(self) -> dict[str, str]:
        return {"alertname": self.name, "severity": self.severity, "team": self.team}

    @property
    def annotations(self) -> dict[str, str]:
        return {"summary": f"an alert of team {self.team}"}

    @property
    def destinations(self) -> tuple[str, ...]:
        # Route `page` for critical alerts; `finops` or the default otherwise: both the hook.
        return ("pd", "hook") if self.severity == "critical" else ("hook",)


def make_alerts(tag: str, count: int, *, start: int = 0, critical_every: int = 4) -> list[Sample]:
    return [
        Sample(
            f"{tag}{i:04d}",
            "critical" if i % critical_every == 0 else "warning",
            "finops" if i % 2 else "platform",
        )
        for i in range(start, start + count)
    ]


def bodies(
    alerts: Sequence[Sample], per_webhook: int, starts_at: datetime, *, status: str = "firing"
) -> list[dict[str, Any]]:
    """Alertmanager webhooks carrying `alerts`, `per_webhook` at a time."""
    ends = starts_at + timedelta(minutes=30) if status == "resolved" else None
    return [
        webhook(
            [(a.labels, a.annotations) for a in alerts[i : i + per_webhook]],
            status=status,
            starts_at=starts_at,
            ends_at=ends,
        )
        for i in range(0, len(alerts), per_webhook)
    ]


def expected(alerts: Sequence[Sample], statuses: Sequence[str]) -> set[Key]:
    """Every notification the alerts should cause: per destination of their route."""
    return {(d, a.name, s) for a in alerts for d in a.destinations for s in statuses}


def started_minutes_ago(minutes: int) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes)


# -- what the vendors received ----------------------------------------------------------------


def _names(value: Any) -> set[str]:
    return {m for s in strings(value) for m in NAME.findall(s)}


def slack_notices(slack: SlackWebhookServer) -> list[tuple[str, str]]:
    """(alertname, status) of each notification in the accepted Slack messages, in order;
    a digest counts once for each alert it lists."""
    found: list[tuple[str, str]] = []
    for message in slack.messages:
        seen: dict[tuple[str, str], None] = {}
        for text in strings(message):
            for status, name in SLACK_NOTICE.findall(text):
                seen[(name, status.lower())] = None
        found.extend(seen)
    return found


def pagerduty_notices(pagerduty: FakePagerDuty) -> list[tuple[str, str]]:
    """(alertname, status) of each accepted PagerDuty event, in order. A resolve carries no
    alert: it is matched to its trigger by dedup_key ('?' when it matches none)."""
    by_key: dict[str, str] = {}
    found: list[tuple[str, str]] = []
    for event in pagerduty.events:
        key = event["dedup_key"]
        if event["event_action"] == "trigger":
            (name,) = _names(event["payload"])
            by_key.setdefault(key, name)
            found.append((name, "firing"))
        else:
            found.append((by_key.get(key, "?"), "resolved"))
    return found


@dataclass
class Tally:
    """The notifications the vendors received, against those expected."""

    expected: set[Key]
    sent: int
    seen: Counter[Key] = field(default_factory=Counter)
    order: list[Key] = field(default_factory=list)

    @classmethod
    def of(
        cls, expected: set[Key], sent: int, slack: SlackWebhookServer, pagerduty: FakePagerDuty
    ) -> Tally:
        tally = cls(expected, sent)
        for destination, notices in (
            ("hook", slack_notices(slack)),
            ("pd", pagerduty_notices(pagerduty)),
        ):
            for name, status in notices:
                key = (destination, name, status)
                tally.seen[key] += 1
                tally.order.append(key)
        return tally

    @property
    def lost(self) -> set[Key]:
        return {k for k in self.expected if self.seen[k] == 0}

    @property
    def unexpected(self) -> set[Key]:
        return set(self.seen) - self.expected

    @property
    def duplicated(self) -> dict[Key, int]:
        """Notifications received more than once, with the number of extra copies."""
        return {k: n - 1 for k, n in self.seen.items() if n > 1}

    @property
    def delivered(self) -> int:
        return sum(self.seen.values())

    def complete(self) -> bool:
        return not self.lost

    def left_firing(self) -> list[tuple[str, str]]:
        """(destination, alert) expected to end resolved whose last notice was a firing:
        a resolve that overtook its firing (PagerDuty keeps that incident open)."""
        last: dict[tuple[str, str], str] = {}
        for destination, name, status in self.order:
            last[(destination, name)] = status
        resolved = {(d, n) for d, n, s in self.expected if s == "resolved"}
        return sorted(k for k in resolved if last.get(k) == "firing")

    def figures(self, label: str) -> str:
        per_destination = {
            d: sum(n for (dest, _, _), n in self.seen.items() if dest == d) for d in DESTINATIONS
        }
        return (
            f"{label}: sent {self.sent} alerts, expected {len(self.expected)} notifications, "
            f"delivered {self.delivered} {per_destination}, "
            f"duplicates {sum(self.duplicated.values())}, lost {len(self.lost)}"
        )


def assert_pagerduty_paired(pagerduty: FakePagerDuty, resolved: Sequence[Sample]) -> None:
    """Every resolve closed the PagerDuty alert its trigger opened, and none is left open."""
    assert pagerduty.dropped_events == [], "a resolve found no open PagerDuty alert"
    names = {a.name for a in resolved if "pd" in a.destinations}
    keys = {
        event["dedup_key"]
        for event in pagerduty.events
        if event["event_action"] == "trigger" and _names(event["payload"]) & names
    }
    assert len(keys) == len(names), "one dedup_key per alert episode"
    still_open = [i.dedup_key for i in pagerduty.incidents if i.status != "resolved"]
    assert still_open == [], f"PagerDuty alerts left open: {still_open}"


# -- the replicas -----------------------------------------------------------------------------


@dataclass
class Cluster:
    """alert-router replicas sharing one Redis and the local vendors."""

    tmp_path: Path
    redis: RedisServer
    slack: SlackWebhookServer
    pagerduty: FakePagerDuty
    client: httpx.Client
    replicas: list[ServerProcess] = field(default_factory=list)

    def start(
        self,
        count: int = 2,
        *,
        slack_rate: float = 0,
        context: bool = False,
        prometheus: Sequence[str | None] = (),
        lease: float = LEASE,
    ) -> list[ServerProcess]:
        """Start `count` replicas and wait until each is ready. `prometheus`: the
        PROMETHEUS_URL of each (None: nothing listens)."""
        config = self.tmp_path / "routes.yaml"
        config.write_text((CONTEXT if context else "") + RULES % {"slack_rate": slack_rate})
        started = []
        for index in range(count):
            url = prometheus[index] if index < len(prometheus) else None
            settings = make_settings(
                self.tmp_path,
                config,
                state=self.redis.url,
                lease=lease,
                slack_api_url=f"{self.slack.base_url}/api/",
                pagerduty_events_url=self.pagerduty.url,
                prometheus_url=url or "http://127.0.0.1:9",
            )
            (settings.secrets_dir / "slack-webhook-url").write_text(self.slack.url)
            (settings.secrets_dir / "pagerduty-key").write_text(ROUTING_KEY)
            proc = ServerProcess(settings)
            self.replicas.append(proc)
            started.append(proc)
        for proc in started:
            proc.wait_ready()
        return started

    # -- talking to the replicas

    def post(self, proc: ServerProcess, body: Mapping[str, Any]) -> httpx.Response:
        return self.client.post(f"{proc.url}/alerts", json=body, headers=AUTH, timeout=10)

    def deliver(self, proc: ServerProcess, body: Mapping[str, Any], timeout: float = 20) -> None:
        """POST until 200, retrying 5xx and connection errors as Alertmanager does."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                response: httpx.Response | None = self.post(proc, body)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 200:
                answer = response.json()
                assert answer["accepted"] + answer["duplicates"] == len(body["alerts"])
                return
            if response is not None:
                assert response.status_code >= 500, response.text
            assert time.monotonic() < deadline, "the router never accepted the webhook"
            time.sleep(0.1)

    def ready(self, proc: ServerProcess) -> int:
        return self.client.get(f"{proc.url}/readyz", timeout=10).status_code

    # -- what the vendors received

    def tally(self, want: set[Key], sent: int) -> Tally:
        return Tally.of(want, sent, self.slack, self.pagerduty)

    def wait_delivered(self, want: set[Key], sent: int, timeout: float) -> Tally:
        """Until every expected notification arrived and the queues are empty."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.tally(want, sent)
            if result.complete() and self.idle():
                return result
            time.sleep(0.1)
        result = self.tally(want, sent)
        pytest.fail(
            f"{result.figures('not delivered')}; lost: {sorted(result.lost)[:12]}; "
            f"left firing: {result.left_firing()[:12]}; Redis: {self.depths()}"
        )

    # -- what Redis holds

    def depths(self) -> dict[str, int]:
        return {
            "inbox": int(self.redis.command("HLEN", f"{PREFIX}:inbox")),
            "outbox": int(self.redis.command("SCARD", f"{PREFIX}:outbox:ids")),
            "dead_letters": int(self.redis.command("ZCARD", f"{PREFIX}:dead")),
        }

    def idle(self) -> bool:
        return self.depths() == {"inbox": 0, "outbox": 0, "dead_letters": 0}

    def leased(self, until: float) -> set[tuple[str, str]]:
        """Claimed work whose lease runs now and ends by `until`: ("inbox", id) or
        (destination, outbox id). (A retry waits in the same sets: the tests that look
        here make no vendor fail.)"""
        now = repr(time.time())
        found = set()
        for queue, key in [("inbox", f"{PREFIX}:inbox:leased")] + [
            (d, f"{PREFIX}:outbox:wait:{d}") for d in DESTINATIONS
        ]:
            found |= {
                (queue, i) for i in self.redis.command("ZRANGEBYSCORE", key, now, repr(until))
            }
        return found

    def held_by(self, proc: ServerProcess) -> set[tuple[str, str]]:
        """Claims of `proc` whose lease runs now: ("inbox", id) or (destination, outbox id).
        A claim names its owner, whose id carries the process id."""
        mine = f"/{proc.proc.pid}/"
        now = time.time()
        found = set()
        owners = self.redis.command("HGETALL", f"{PREFIX}:inbox:owner")
        for id_, owner in owners.items():
            at = self.redis.command("ZSCORE", f"{PREFIX}:inbox:leased", id_)
            if mine in owner and at is not None and float(at) > now:
                found.add(("inbox", id_))
        for destination in DESTINATIONS:
            key = f"{PREFIX}:outbox:wait:{destination}"
            for id_ in self.redis.command("ZRANGEBYSCORE", key, repr(now), "+inf"):
                owner = self.redis.command("HGET", f"{PREFIX}:outbox:item:{id_}", "owner")
                if owner is not None and mine in owner:
                    found.add((destination, id_))
        return found

    def inbox_alerts(self, held: set[tuple[str, str]]) -> set[str]:
        """The alertnames of held inbox items."""
        names: set[str] = set()
        for queue, id_ in held:
            if queue == "inbox":
                payload = self.redis.command("HGET", f"{PREFIX}:inbox", id_)
                names |= set(NAME.findall(payload or ""))
        return names

    def notifications(self, leased: set[tuple[str, str]]) -> set[Key]:
        """(destination, alertname, status) of leased outbox items."""
        keys: set[Key] = set()
        for destination, id_ in leased:
            if destination == "inbox":
                continue
            status, body = self.redis.command(
                "HMGET", f"{PREFIX}:outbox:item:{id_}", "status", "body"
            )
            if status is not None:
                keys |= {(destination, name, status) for name in NAME.findall(body)}
        return keys

    def _frozen_holding(
        self, proc: ServerProcess, wanted: Callable[[set[tuple[str, str]]], bool]
    ) -> set[tuple[str, str]]:
        """SIGSTOP `proc` and return the work it holds if that is `wanted`; else SIGCONT it
        and return an empty set. Each claim names its owner, so what the frozen replica
        holds is known exactly (a moment after the freeze, for the commands it sent just
        before)."""
        proc.proc.send_signal(signal.SIGSTOP)
        time.sleep(0.3)
        held = self.held_by(proc)
        if held and wanted(held):
            return held
        proc.proc.send_signal(signal.SIGCONT)
        return set()

    def freeze_when(
        self, proc: ServerProcess, wanted: Callable[[set[tuple[str, str]]], bool], timeout: float
    ) -> set[tuple[str, str]]:
        """Watch `proc` running until the work it holds is `wanted`, then freeze it as
        `_frozen_holding` does; an empty set if that never happens within `timeout`.
        Looking costs a few Redis commands, so a short moment is caught that a look after
        each freeze would miss."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if wanted(self.held_by(proc)):
                held = self._frozen_holding(proc, wanted)
                if held:
                    return held
            time.sleep(0.02)
        return set()

    def freeze_holding(
        self,
        proc: ServerProcess,
        wanted: Callable[[set[tuple[str, str]]], bool] = bool,
        tries: int = 3,
    ) -> set[tuple[str, str]]:
        """Freeze `proc` and return the work it holds if that is `wanted` (see
        `_frozen_holding`), up to `tries` times, letting it work a while between two; an
        empty set if it never held such work. The freeze only picks the moment of the
        SIGKILL that follows. (Watching it run instead misses its claims: a look takes
        several Redis round trips, longer than a claim lasts on a loaded machine.)"""
        for _ in range(tries):
            held = self._frozen_holding(proc, wanted)
            if held:
                return held
            time.sleep(0.3)
        return set()


@pytest.fixture
def cluster(
    tmp_path: Path,
    redis_factory: Callable[..., RedisServer],
    slack_webhook: SlackWebhookServer,
    fake_pagerduty: FakePagerDuty,
) -> Iterator[Cluster]:
    """Replicas on a Redis with AOF (appendonly yes, appendfsync always), as required."""
    redis = redis_factory(appendonly=True)
    with httpx.Client() as client:
        made = Cluster(tmp_path, redis, slack_webhook, fake_pagerduty, client)
        try:
            yield made
        finally:
            for proc in made.replicas:
                proc.stop()


@pytest.fixture
def hanging_prometheus() -> Iterator[HangingServer]:
    server = HangingServer()
    yield server
    server.close()


# -- two Alertmanagers, two replicas ----------------------------------------------------------


def test_ha_alertmanagers_into_two_replicas_notify_once(
    cluster: Cluster, alertmanager_factory: AlertmanagerFactory
) -> None:
    # Slack at 1 message/s: the send slot is shared through Redis by both replicas.
    a, b = cluster.start(2, slack_rate=1)
    # Each Alertmanager sends to its own replica, as a Service spreads connections.
    am1 = alertmanager_factory(f"{a.url}/alerts", TOKEN, group_by=("team",))
    am2 = alertmanager_factory(f"{b.url}/alerts", TOKEN, group_by=("team",))
    alerts = make_alerts("Ha", 8, critical_every=3)
    # Prometheus sends startsAt, so both Alertmanagers hold the same episode.
    starts = started_minutes_ago(1)
    posted = [am_alert(s.labels, s.annotations, starts_at=starts) for s in alerts]
    for am in (am1, am2):
        am.post_alerts(posted)
    cluster.wait_delivered(expected(alerts, ["firing"]), len(alerts), timeout=20)

    ends = datetime.now(UTC)
    for am in (am1, am2):
        am.resolve(posted, at=ends)
    both = expected(alerts, ["firing", "resolved"])
    cluster.wait_delivered(both, len(alerts), timeout=20)
    # The slower Alertmanager's copies, a group_interval (2 s) later, must change nothing.
    time.sleep(3)

    result = cluster.tally(both, len(alerts))
    sent = {"am1": am1.notifications(), "am2": am2.notifications()}
    print(result.figures("HA pair"), f"; Alertmanager webhooks: {sent}")
    # Both Alertmanagers sent the firing and the resolved groups to their own replica.
    assert all(n["sent"] >= 2 and n["failed"] == 0 for n in sent.values()), sent
    assert result.lost == set() and result.unexpected == set()
    assert result.duplicated == {}
    assert result.left_firing() == []
    assert_pagerduty_paired(cluster.pagerduty, alerts)
    assert min_interval(cluster.slack.delivery_times()) >= 0.95


# -- SIGKILL mid-storm ------------------------------------------------------------------------


def test_sigkill_of_one_replica_mid_storm_loses_nothing(cluster: Cluster) -> None:
    a, b = cluster.start(2)
    alerts = make_alerts("Storm", 1000)
    # Events in flight, where a crash hurts most (see `mid_storm_pagerduty`).
    cluster.pagerduty.script(*mid_storm_pagerduty(sum("pd" in s.destinations for s in alerts)))
    starts = started_minutes_ago(5)
    firing = bodies(alerts, 50, starts)
    held: set[tuple[str, str]] = set()
    orphaned: set[Key] = set()
    killed_at = 0.0
    # The HA pair's two copies of each webhook, one to each replica, until `a` is killed
    # holding claimed work; then the survivor `b` gets the rest.
    for index, body in enumerate(firing):
        if a.proc.returncode is not None:
            cluster.deliver(b, body)
            continue
        # Either copy may come first.
        for proc in (a, b) if index % 2 else (b, a):
            cluster.deliver(proc, body)
        if index >= 4:
            held = cluster.freeze_holding(a)
        if held:
            orphaned = cluster.notifications(held)
            killed_at = time.monotonic()
            a.kill()
    assert a.proc.returncode == -signal.SIGKILL, "the replica never held claimed work"

    want = expected(alerts, ["firing"])
    result = cluster.wait_delivered(want, len(alerts), timeout=LEASE + 30)
    finished = time.monotonic() - killed_at
    print(result.figures("SIGKILL mid-storm"))
    print(
        f"the killed replica held {sum(q == 'inbox' for q, _ in held)} inbox claims and "
        f"{len(orphaned)} notifications; the survivor finished {finished:.1f}s after the "
        f"kill; duplicates: {sorted(result.duplicated)}"
    )
    assert result.lost == set() and result.unexpected == set()
    # Duplicates come only from the crash window: what the killed replica had claimed.
    assert set(result.duplicated) <= orphaned, set(result.duplicated) - orphaned
    assert all(extra == 1 for extra in result.duplicated.values())

    # The survivor resolves them all, each with its trigger's PagerDuty dedup_key.
    for body in bodies(alerts, 50, starts, status="resolved"):
        cluster.deliver(b, body)
    both = expected(alerts, ["firing", "resolved"])
    result = cluster.wait_delivered(both, len(alerts), timeout=30)
    print(result.figures("... and resolved"))
    assert result.left_firing() == []
    assert_pagerduty_paired(cluster.pagerduty, alerts)


def mid_storm_pagerduty(triggers: int) -> list[PagerDutyAnswer]:
    """PagerDuty's answers to a storm's `triggers`, in the order they arrive: 10 ms each
    (the real one takes longer), but half a second each from the 40th to the 120th. Each
    replica then has events in flight for a few seconds early in the storm, when the kill
    tests look for a replica holding claimed work: on a fast machine 10 ms triggers were
    all over before any look (a clean-clone CI run found none in 48 freezes)."""
    slow = range(40, 120)
    return [
        PagerDutyAnswer(delay=0.5 if i in slow else 0.01, process=True) for i in range(triggers)
    ]


def storm_until(
    cluster: Cluster,
    a: ServerProcess,
    b: ServerProcess,
    firing: Sequence[Mapping[str, Any]],
    stop_when: Callable[[int], bool],
) -> int:
    """The HA pair's two copies of each webhook, one to each replica, until `stop_when(index)`
    says to stop `a` (the caller does); then the survivor `b` gets the rest. Returns the index
    at which `a` was stopped (len(firing) if never)."""
    for index, body in enumerate(firing):
        for proc in (a, b) if index % 2 else (b, a):
            cluster.deliver(proc, body)
        if stop_when(index):
            for rest in firing[index + 1 :]:
                cluster.deliver(b, rest)
            return index
    return len(firing)


def test_failover_after_sigkill_with_the_default_lease(cluster: Cluster) -> None:
    """The dead replica's claims move within one default lease: no longer than
    FAILOVER_MAX from the SIGKILL to the last of its claimed alerts delivered."""
    a, b = cluster.start(2, lease=DEFAULT_LEASE)
    # 20 webhooks of 50: the replica is looked at after each from the fifth on, and killed
    # the first time it holds claimed work (on a loaded machine it may hold none at a look).
    alerts = make_alerts("Fail", 1000)
    cluster.pagerduty.script(*mid_storm_pagerduty(sum("pd" in s.destinations for s in alerts)))
    starts = started_minutes_ago(5)
    held: set[tuple[str, str]] = set()
    killed_at = 0.0

    def kill_when_holding(index: int) -> bool:
        nonlocal held, killed_at
        if index < 4:
            return False
        held = cluster.freeze_holding(a)
        if held:
            killed_at = time.monotonic()
            a.kill()
        return bool(held)

    storm_until(cluster, a, b, bodies(alerts, 50, starts), kill_when_holding)
    assert a.proc.returncode == -signal.SIGKILL, "the replica never held claimed work"
    by_name = {s.name: s for s in alerts}
    orphaned = cluster.notifications(held) | expected(
        [by_name[n] for n in cluster.inbox_alerts(held)], ["firing"]
    )

    deadline = time.monotonic() + FAILOVER_MAX + 15
    while time.monotonic() < deadline:
        seen = cluster.tally(orphaned, 0).seen
        if all(seen[k] for k in orphaned):
            break
        time.sleep(0.05)
    failover = time.monotonic() - killed_at
    result = cluster.wait_delivered(expected(alerts, ["firing"]), len(alerts), timeout=30)
    print(result.figures("failover after SIGKILL"))
    print(
        f"failover: the killed replica held {len(held)} claims ({len(orphaned)} "
        f"notifications); the last of them was delivered {failover:.1f}s after the SIGKILL "
        f"(lease {DEFAULT_LEASE:g}s)"
    )
    assert failover <= FAILOVER_MAX
    assert result.lost == set() and result.unexpected == set()
    assert set(result.duplicated) <= orphaned, set(result.duplicated) - orphaned
    assert all(extra == 1 for extra in result.duplicated.values())
    # The survivor counts what it took over from the dead replica: at least the duplicates
    # (each was a notification mid-send at the kill), never more than the dead one held.
    taken_over = sum(
        _sample(b, "alert_router_claims_taken_over_total", queue=queue)
        for queue in ("inbox", "outbox")
    )
    assert len(result.duplicated) <= taken_over <= len(held)
    print(f"failover: the survivor took over {taken_over:g} claims")


def _sample(proc: ServerProcess, name: str, **labels: str) -> float:
    """One sample of a replica's /metrics, 0 when absent."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    text = httpx.get(f"{proc.url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_sigterm_of_one_replica_mid_storm_waits_for_no_lease(cluster: Cluster) -> None:
    """A rolling update: the stopped replica releases what it claimed and is not sending,
    and the survivor delivers everything well before one lease would have run out."""
    a, b = cluster.start(2, lease=DEFAULT_LEASE)
    alerts = make_alerts("Roll", 600)
    # PagerDuty takes 50 ms a trigger: the replica has sends in flight at the SIGTERM.
    triggers = sum("pd" in s.destinations for s in alerts)
    cluster.pagerduty.script(*[PagerDutyAnswer(delay=0.05, process=True)] * triggers)
    starts = started_minutes_ago(5)
    held: set[tuple[str, str]] = set()
    stopped_at = 0.0
    code: int | None = None

    def stop_when_holding(index: int) -> bool:
        nonlocal held, stopped_at, code
        if index < 4:
            return False
        look_until = time.monotonic() + 1.0
        while not held and time.monotonic() < look_until:
            held = cluster.held_by(a)
        if not held:
            return False
        stopped_at = time.monotonic()
        code = a.stop()  # SIGTERM, and wait for the exit
        return True

    storm_until(cluster, a, b, bodies(alerts, 50, starts), stop_when_holding)
    assert code is not None, "the replica never held claimed work"
    exited = time.monotonic() - stopped_at
    want = expected(alerts, ["firing"])
    result = cluster.wait_delivered(want, len(alerts), timeout=DEFAULT_LEASE)
    handover = time.monotonic() - stopped_at
    print(result.figures("SIGTERM mid-storm"))
    print(
        f"graceful stop: the stopped replica held {len(held)} claims, exited {exited:.1f}s "
        f"after SIGTERM; the survivor finished {handover:.1f}s after it "
        f"(lease {DEFAULT_LEASE:g}s)"
    )
    assert code == 0 and exited < 10.0
    # Nothing waited for a lease: its claims were released, not left to run out.
    assert handover < DEFAULT_LEASE / 2
    assert cluster.held_by(a) == set()
    assert result.lost == set() and result.unexpected == set()
    # Sends in flight at the SIGTERM finished and were recorded: nothing went out twice.
    assert result.duplicated == {}


def test_resolves_wait_for_firing_held_by_a_killed_replica(
    cluster: Cluster, hanging_prometheus: HangingServer
) -> None:
    # `a` waits for the 5 s Prometheus timeout before it routes what it claims; `b` gets no
    # answer from its Prometheus at once. PagerDuty takes 2 s a trigger: the replicas (8 sends
    # in flight each) are still sending the first alerts' triggers when `a` claims more.
    a, b = cluster.start(2, context=True, prometheus=[hanging_prometheus.url, None])
    first = make_alerts("Crash", 48, critical_every=1)
    later = make_alerts("Crash", 4, start=48, critical_every=1)
    cluster.pagerduty.script(*[PagerDutyAnswer(delay=2.0, process=True)] * len(first))
    starts = started_minutes_ago(5)
    # `b` routes the first alerts. `a` is paused meanwhile: had it claimed some, its
    # Prometheus's failure, cached for a few seconds, would let it route the later ones at
    # once, and it would never hold them.
    a.proc.send_signal(signal.SIGSTOP)
    try:
        cluster.deliver(b, bodies(first, 48, starts)[0])
        wait_until(lambda: cluster.depths()["inbox"] == 0, timeout=15)
    finally:
        a.proc.send_signal(signal.SIGCONT)
    # Both replicas send the triggers.
    wait_until(lambda: any(q == "pd" for q, _ in cluster.held_by(a)), timeout=15)
    # While they do, `a` accepts more alerts and holds them. The inbox is shared: `b` is
    # paused meanwhile, or it could claim them before `a` does.
    b.proc.send_signal(signal.SIGSTOP)
    try:
        cluster.deliver(a, bodies(later, 4, starts)[0])
        wait_until(lambda: any(q == "inbox" for q, _ in cluster.held_by(a)), timeout=10)
    finally:
        b.proc.send_signal(signal.SIGCONT)
    # Killed holding both kinds of claim: alerts not routed yet, and a PagerDuty trigger.
    held = cluster.freeze_when(a, lambda h: {"inbox", "pd"} <= {q for q, _ in h}, timeout=10)
    assert held, "the replica never held both an alert and a notification"
    a.kill()

    # Their resolves reach the survivor while the dead replica's leases still run.
    alerts = first + later
    cluster.deliver(b, bodies(alerts, 52, starts, status="resolved")[0])
    both = expected(alerts, ["firing", "resolved"])
    result = cluster.wait_delivered(both, len(alerts), timeout=LEASE + 20)
    print(result.figures("resolves after a SIGKILL"), f"; order: {result.order}")
    assert result.lost == set() and result.unexpected == set()
    # A resolve sent before its firing leaves the PagerDuty alert open for good.
    assert result.left_firing() == []
    assert_pagerduty_paired(cluster.pagerduty, alerts)


# -- Redis restarted ---------------------------------------------------------------------------


def test_redis_crash_and_restart_with_aof_loses_nothing(cluster: Cluster) -> None:
    redis = cluster.redis
    assert redis.command("CONFIG", "GET", "appendfsync") == {"appendfsync": "always"}
    a, b = cluster.start(2)
    alerts = make_alerts("Aof", 400)
    before, after = alerts[:200], alerts[200:]
    starts = started_minutes_ago(5)
    for body in bodies(before, 20, starts):
        cluster.deliver(a, body)
        cluster.deliver(b, body)
    # A crash: what survives is what was fsynced, with appendfsync always every write that
    # Redis acknowledged.
    redis.kill()
    refused = bodies(after, 20, starts)
    assert cluster.post(a, refused[0]).status_code == 503
    redis.start()
    # Alertmanager sends again what was refused, and the rest follows.
    for body in refused:
        cluster.deliver(a, body)
        cluster.deliver(b, body)

    want = expected(alerts, ["firing"])
    result = cluster.wait_delivered(want, len(alerts), timeout=LEASE + 30)
    print(result.figures("Redis crash + AOF restart"), f"; duplicates: {sorted(result.duplicated)}")
    assert result.lost == set() and result.unexpected == set()
    # A duplicate needs a send whose record Redis never took, so only alerts accepted
    # before the crash may have one: the others were sent and recorded while Redis was up.
    assert set(result.duplicated) <= expected(before, ["firing"])


# -- Redis stopped ----------------------------------------------------------------------------


def test_redis_down_answers_503_and_not_ready_then_recovers(cluster: Cluster) -> None:
    replicas = cluster.start(2)
    a, b = replicas
    alerts = make_alerts("Down", 20)
    before, during = bodies(alerts, 10, started_minutes_ago(5))
    # The vendors answer the first requests with 429 Retry-After 1: the work stays queued in
    # Redis, and every replica waits out the pause.
    cluster.slack.script(*[webhook_error(429, "rate_limited", retry_after=1)] * 3)
    cluster.pagerduty.script(*[PagerDutyAnswer(429, headers={"Retry-After": "1"})] * 3)
    cluster.deliver(a, before)
    cluster.deliver(b, before)
    wait_until(lambda: bool(cluster.slack.requests and cluster.pagerduty.requests))
    assert cluster.slack.delivered == [] and cluster.pagerduty.events == []

    cluster.redis.stop()
    stopped_at = time.monotonic()
    for proc in replicas:
        assert cluster.post(proc, during).status_code == 503
        readyz = cluster.client.get(f"{proc.url}/readyz", timeout=10)
        assert readyz.status_code == 503
        assert any("store not writable" in p for p in readyz.json()["problems"])
    # Past the vendors' pause, the delivery loops find Redis gone and wait for it.
    time.sleep(max(0.0, 2.0 - (time.monotonic() - stopped_at)))
    assert cluster.slack.delivered == [] and cluster.pagerduty.events == []
    cluster.redis.start()

    wait_until(lambda: all(cluster.ready(proc) == 200 for proc in replicas), timeout=15)
    # Alertmanager sends again what was refused.
    cluster.deliver(a, during)
    cluster.deliver(b, during)
    want = expected(alerts, ["firing"])
    result = cluster.wait_delivered(want, len(alerts), timeout=15)
    print(result.figures("Redis stopped and started"))
    assert result.lost == set() and result.unexpected == set()
    assert result.duplicated == {}


# -- scheduled reports -------------------------------------------------------------------

REPORT_RULES = """
destinations:
  hook: {slack: {webhook_url: {secret: slack-webhook-url}}}
reports:
  every-minute:
    to: [hook]
    schedule: "* * * * *"
    window: 1h
    sections: [incidents]
"""


def test_two_replicas_send_a_scheduled_report_once(
    tmp_path: Path, redis_server: RedisServer, slack_webhook: SlackWebhookServer
) -> None:
    config = tmp_path / "routes.yaml"
    config.write_text(REPORT_RULES)
    replicas = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        settings = make_settings(tmp_path / name, config, state=redis_server.url)
        (settings.secrets_dir / "slack-webhook-url").write_text(slack_webhook.url)
        replicas.append(ServerProcess(settings))
    try:
        for replica in replicas:
            replica.wait_ready()
        # The first look records the minute before as the report's start; the next minute
        # is the first slot, sent by one replica only.
        wait_until(lambda: len(slack_webhook.messages) >= 1, timeout=75)
        first = time.time()
        # Both replicas look every few seconds: long enough for a second copy to show.
        time.sleep(8)
        reports = [m for m in slack_webhook.messages if "Cost report every-minute" in str(m)]
        assert len(reports) == 1, reports
        assert all("(LATE)" not in str(m) for m in reports)
        assert time.time() - first < 60  # still the same slot
    finally:
        for replica in replicas:
            replica.stop()


def test_a_replica_killed_at_the_scheduled_minute_leaves_its_report_to_the_other(
    tmp_path: Path,
    redis_server: RedisServer,
    slack_webhook: SlackWebhookServer,
    hanging_prometheus: HangingServer,
) -> None:
    config = tmp_path / "routes.yaml"
    # `spend` queries Prometheus, which never answers: whichever replica takes the slot is
    # still building the report when it is killed.
    config.write_text(REPORT_RULES.replace("sections: [incidents]", "sections: [spend]"))
    replicas = {}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        settings = make_settings(
            tmp_path / name,
            config,
            state=redis_server.url,
            lease=LEASE,
            prometheus_url=hanging_prometheus.url,
        )
        (settings.secrets_dir / "slack-webhook-url").write_text(slack_webhook.url)
        replicas[name] = ServerProcess(settings)
    try:
        for replica in replicas.values():
            replica.wait_ready()

        def claimer() -> str | None:
            """The replica that holds the report's send: the one that took the slot queued
            it, but any replica's loop may lease it first. A lease names its owner, whose id
            carries the process id."""
            for id_ in redis_server.command("ZRANGE", f"{PREFIX}:report:sends", "0", "-1"):
                owner = redis_server.command("HGET", f"{PREFIX}:report:send:{id_}", "owner")
                for name, replica in replicas.items():
                    if owner and f"/{replica.proc.pid}/" in owner:
                        return name
            return None

        wait_until(lambda: claimer() is not None, timeout=75, interval=0.01)
        taken_by = claimer()
        assert taken_by is not None
        replicas[taken_by].kill()
        killed = time.monotonic()
        # Prometheus answers nothing from now on (refused): the report says so, but is sent.
        hanging_prometheus.close()
        assert slack_webhook.messages == []
        survivor = replicas["b" if taken_by == "a" else "a"]
        wait_until(lambda: len(slack_webhook.messages) >= 1, timeout=LEASE + 20)
        took = time.monotonic() - killed
        print(f"report sent by the survivor {took:.1f} s after the kill (lease {LEASE:g} s)")
        # Both replicas' loops look every few seconds: long enough for a second copy to show.
        time.sleep(8)
        reports = [m for m in slack_webhook.messages if "Cost report every-minute" in str(m)]
        assert len(reports) == 1, reports
        assert all("(LATE)" not in str(m) for m in reports)
        messages = [line.get("message") for line in survivor.logs()]
        assert "report taken over from a replica that stopped renewing it" in messages
        assert "report delivered" in messages
    finally:
        for replica in replicas.values():
            if replica.proc.poll() is None:
                replica.stop()
