"""The report scheduler on real stores: a slot is sent once, by one replica, late after a
restart across it, and skipped when missed by more than its window."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from receiver.config.reports import ReportSpec
from receiver.config.rules import Rules, parse_rules
from receiver.notify.base import NotifyError, Ref
from receiver.notify.slack.bot import ChartNotUploaded
from receiver.pipeline.reports import ATTEMPTS, PostReport, ReportScheduler, ReportWork
from receiver.pipeline.tuning import Tuning
from receiver.reports.model import Report
from receiver.reports.schedule import ON_TIME, Slot
from receiver.store.base import Store
from receiver.store.redis.store import RedisStore
from receiver.store.sqlite.store import SqliteStore
from tests.fakes.redis import RedisServer

RULES = """
destinations:
  finops: {slack: {webhook_url: {secret: slack-webhook-url}}}
reports:
  daily-costs:
    to: [finops]
    schedule: "0 9 * * *"
    timezone: Europe/Berlin
    window: 24h
    sections: [incidents]
"""
BOT_RULES = RULES.replace(
    "finops: {slack: {webhook_url: {secret: slack-webhook-url}}}",
    "bot: {slack: {token: {secret: slack-bot-token}, channel: C1}}",
).replace("to: [finops]", "to: [bot]\n    chart: true")
LEASE = 12.0
# 09:00 in Berlin on a winter day.
NINE = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

StoreFactory = Callable[[], Store]


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    if request.param == "sqlite":
        return lambda: SqliteStore(tmp_path / "state.db")
    server: RedisServer = request.getfixturevalue("redis_server")
    return lambda: RedisStore(server.url, prefix=f"reports-{id(tmp_path)}")


@pytest.fixture
def rules(tmp_path: Path) -> Rules:
    return parse_rules(RULES, tmp_path / "routes.yaml")


class Outbox:
    """What the schedulers delivered: (replica, report name, slot time, late); each post
    answered with the next of `answers` (an error to raise, or None: posted)."""

    def __init__(self, *answers: NotifyError | None) -> None:
        self.sent: list[tuple[str, str, datetime, bool]] = []
        self.answers = list(answers)
        self.calls: list[Ref | None] = []
        self.charts: list[bytes | None] = []

    def work(self, owner: str) -> ReportWork:
        async def build(name: str, spec: ReportSpec, slot: Slot) -> Report:
            start = slot.at - timedelta(seconds=spec.window)
            return Report(name, start, slot.at, spec.timezone, slot.late, tuple(spec.sections))

        def poster(
            destination: str, report: Report, chart: bytes | None
        ) -> tuple[PostReport, Callable[[], Awaitable[None]]]:
            async def post(posted: Ref | None) -> Ref:
                self.calls.append(posted)
                self.charts.append(chart)
                answer = self.answers.pop(0) if self.answers else None
                if answer is not None:
                    raise answer
                self.sent.append((owner, report.name, report.end, report.late))
                return {"channel": "C1", "ts": "1.0", "kind": "report"}

            async def close() -> None:
                return None

            return post, close

        async def draw(report: Report) -> bytes:
            return b"PNG of " + report.name.encode()

        return ReportWork(build, poster, draw, lambda destination: destination == "bot")

    def scheduler(
        self,
        store: Store,
        rules: Rules,
        owner: str,
        clock: Callable[[], datetime],
        stopping: asyncio.Event | None = None,
        *,
        attempts: int = ATTEMPTS,
    ) -> ReportScheduler:
        return ReportScheduler(
            store, lambda: rules, self.work(owner), owner=owner,
            stopping=stopping or asyncio.Event(), clock=clock, attempts=attempts,
            tuning=lambda: Tuning(backoff_base=0.01, lease=LEASE), rng=random.Random(1),
        )  # fmt: skip


@pytest.fixture
async def opened(make_store: StoreFactory) -> AsyncIterator[Callable[[], Store]]:
    stores: list[Store] = []

    def one() -> Store:
        store = make_store()
        stores.append(store)
        return store

    yield one
    for store in stores:
        await store.close()


async def test_a_new_report_starts_with_its_next_slot(
    opened: Callable[[], Store], rules: Rules
) -> None:
    store = opened()
    await store.open()
    outbox = Outbox()
    now = NINE - timedelta(hours=6)
    scheduler = outbox.scheduler(store, rules, "a", lambda: now)
    # First seen at 03:00: yesterday's 09:00 is recorded, not sent late.
    assert await scheduler.tick() == []
    assert await store.last_report_slot("daily-costs") == NINE - timedelta(days=1)
    assert outbox.sent == []


async def test_a_slot_is_sent_once_on_time(opened: Callable[[], Store], rules: Rules) -> None:
    store = opened()
    await store.open()
    await store.claim_report_slot("daily-costs", NINE - timedelta(days=1), "earlier")
    outbox = Outbox()
    now = NINE - timedelta(seconds=30)
    scheduler = outbox.scheduler(store, rules, "a", lambda: now)
    assert await scheduler.tick() == []  # 08:59:30: nothing due
    now = NINE + timedelta(seconds=3)
    assert [s.slot for s in await scheduler.tick()] == [Slot(NINE, late=False)]
    # Every later look, in the same minute or hours later, finds it taken.
    for later in (5, 60, 3600):
        now = NINE + timedelta(seconds=later)
        assert await scheduler.tick() == []
    assert outbox.sent == [("a", "daily-costs", NINE, False)]


async def test_two_replicas_send_each_slot_once(opened: Callable[[], Store], rules: Rules) -> None:
    a, b = opened(), opened()
    await a.open()
    await b.open()
    outbox = Outbox()
    at = NINE + timedelta(seconds=1)
    first = outbox.scheduler(a, rules, "a", lambda: at)
    second = outbox.scheduler(b, rules, "b", lambda: at)
    # Mark yesterday's slot sent, then both look at 09:00:01 at once.
    await a.claim_report_slot("daily-costs", NINE - timedelta(days=1), "earlier")
    await asyncio.gather(first.tick(), second.tick(), first.tick(), second.tick())
    assert [(name, end, late) for _, name, end, late in outbox.sent] == [
        ("daily-costs", NINE, False)
    ]


async def test_a_restart_across_the_slot_sends_it_once_late(
    opened: Callable[[], Store], rules: Rules, make_store: StoreFactory
) -> None:
    store = opened()
    await store.open()
    outbox = Outbox()
    await store.claim_report_slot("daily-costs", NINE - timedelta(days=2), "earlier")
    before = outbox.scheduler(store, rules, "a", lambda: NINE - timedelta(days=1))
    await before.tick()  # yesterday's slot, on time
    await store.close()
    # Down from 08:59 to 11:00: the 09:00 report is sent at 11:00, marked late, once.
    restarted = opened()
    await restarted.open()
    back = NINE + timedelta(hours=2)
    after = outbox.scheduler(restarted, rules, "a2", lambda: back)
    await after.tick()
    await after.tick()
    assert outbox.sent == [
        ("a", "daily-costs", NINE - timedelta(days=1), False),
        ("a2", "daily-costs", NINE, True),
    ]


async def test_a_slot_missed_by_more_than_the_window_is_skipped(
    opened: Callable[[], Store], rules: Rules
) -> None:
    store = opened()
    await store.open()
    await store.claim_report_slot("daily-costs", NINE - timedelta(days=3), "earlier")
    outbox = Outbox()
    # Down for days, back at 08:30: yesterday's 09:00 is 23.5 h ago (within 24 h): sent
    # late; the two before it are not sent at all.
    back = NINE - timedelta(minutes=30)
    await outbox.scheduler(store, rules, "a", lambda: back).tick()
    assert outbox.sent == [("a", "daily-costs", NINE - timedelta(days=1), True)]


async def test_the_loop_stops_when_told(opened: Callable[[], Store], rules: Rules) -> None:
    store = opened()
    await store.open()
    outbox = Outbox()
    await store.claim_report_slot("daily-costs", NINE - timedelta(days=1), "earlier")
    stopping = asyncio.Event()
    scheduler = outbox.scheduler(store, rules, "a", lambda: NINE, stopping)
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(0.2)
    stopping.set()
    await asyncio.wait_for(task, timeout=1.0)
    assert [end for _, _, end, _ in outbox.sent] == [NINE]


# -- sending, through the queue: retries, dead letters, takeover ---------------------------

REF = {"channel": "C1", "ts": "1.0"}


class Clock:
    """A clock the test moves; starts at 09:00:01 on the report's day."""

    def __init__(self) -> None:
        self.now = NINE + timedelta(seconds=1)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def _due_today(store: Store) -> None:
    await store.claim_report_slot("daily-costs", NINE - timedelta(days=1), "earlier")


async def test_a_temporary_failure_is_retried_after_retry_after(
    opened: Callable[[], Store], rules: Rules
) -> None:
    store = opened()
    await store.open()
    await _due_today(store)
    outbox = Outbox(NotifyError("rate limited", recoverable=True, retry_after=30), None)
    clock = Clock()
    scheduler = outbox.scheduler(store, rules, "a", clock)
    assert await scheduler.tick() == []
    # Not before the vendor's Retry-After, then once.
    clock.advance(29)
    assert await scheduler.tick() == []
    clock.advance(1)
    assert [s.destination for s in await scheduler.tick()] == ["finops"]
    assert outbox.calls == [None, None]
    assert outbox.sent == [("a", "daily-costs", NINE, False)]
    # The pause holds the destination's alerts too, for every replica.
    assert await store.reserve_send("finops", 0.0, NINE.timestamp()) >= NINE.timestamp() + 31


async def test_a_chart_that_failed_alone_is_sent_again_alone(
    opened: Callable[[], Store], tmp_path: Path
) -> None:
    rules = parse_rules(BOT_RULES, tmp_path / "routes.yaml")
    store = opened()
    await store.open()
    await _due_today(store)
    outbox = Outbox(ChartNotUploaded("upload 503", REF, recoverable=True, retry_after=1), None)
    clock = Clock()
    scheduler = outbox.scheduler(store, rules, "a", clock)
    await scheduler.tick()
    clock.advance(1)
    await scheduler.tick()
    assert outbox.calls == [None, REF]  # the second try names the report already posted
    assert outbox.charts == [b"PNG of daily-costs"] * 2  # a bot destination gets the chart
    assert len(outbox.sent) == 1


async def test_a_permanent_failure_is_not_retried(
    opened: Callable[[], Store], rules: Rules, caplog: pytest.LogCaptureFixture
) -> None:
    store = opened()
    await store.open()
    await _due_today(store)
    outbox = Outbox(NotifyError("channel_not_found", recoverable=False))
    clock = Clock()
    scheduler = outbox.scheduler(store, rules, "a", clock)
    await scheduler.tick()
    clock.advance(3600)
    await scheduler.tick()
    assert outbox.calls == [None]
    assert outbox.charts == [None]  # an incoming webhook takes no chart
    [record] = [r for r in caplog.records if r.message == "report not delivered"]
    assert record.__dict__["destination"] == "finops"
    assert record.__dict__["error"] == "channel_not_found"
    [letter] = await store.dead_letters()
    assert (letter.destination, letter.alertname, letter.status) == (
        "finops", "daily-costs", "report",
    )  # fmt: skip


async def test_tries_end_after_the_last_attempt_in_a_dead_letter_that_replays(
    opened: Callable[[], Store], rules: Rules
) -> None:
    store = opened()
    await store.open()
    await _due_today(store)
    errors = [NotifyError("503", recoverable=True, retry_after=1) for _ in range(ATTEMPTS)]
    outbox = Outbox(*errors)
    clock = Clock()
    scheduler = outbox.scheduler(store, rules, "a", clock)
    for _ in range(ATTEMPTS + 3):
        await scheduler.tick()
        clock.advance(1)
    assert len(outbox.calls) == ATTEMPTS
    [letter] = await store.dead_letters()
    assert (letter.attempts, letter.error) == (ATTEMPTS, "503")
    assert (await store.depths())["dead_letters"] == 1
    # Slack is back: the dead letter, queued again, is sent once.
    assert await store.replay_dead_letters([letter.id], clock().timestamp()) == 1
    assert [s.slot for s in await scheduler.tick()] == [Slot(NINE, late=False)]
    assert outbox.sent == [("a", "daily-costs", NINE, False)]
    assert await store.dead_letters() == []


async def test_a_send_held_by_a_replica_that_died_is_sent_by_another_after_its_lease(
    opened: Callable[[], Store], rules: Rules
) -> None:
    a, b = opened(), opened()
    await a.open()
    await b.open()
    await _due_today(a)
    clock = Clock()
    outbox = Outbox()
    # Replica a takes the slot and its send, then dies before sending (no renewal).
    assert await a.claim_report_slot("daily-costs", NINE, "a", ["finops"])
    [held] = await a.claim_report_sends(10, clock().timestamp(), LEASE, "a")
    survivor = outbox.scheduler(b, rules, "b", clock)
    assert await survivor.tick() == []  # the slot is taken and its send leased
    clock.advance(LEASE + 1)
    # 09:00:14: within ON_TIME of the slot, so not late.
    assert [s.slot for s in await survivor.tick()] == [Slot(NINE, late=False)]
    assert outbox.sent == [("b", "daily-costs", NINE, False)]
    clock.advance(LEASE + 1)
    assert await survivor.tick() == []
    assert not await a.report_sent("a", held)  # the dead replica's lease is gone


async def test_a_send_taken_over_after_on_time_says_it_is_late(
    opened: Callable[[], Store], rules: Rules
) -> None:
    store = opened()
    await store.open()
    await _due_today(store)
    clock = Clock()
    assert await store.claim_report_slot("daily-costs", NINE, "dead", ["finops"])
    await store.claim_report_sends(10, clock().timestamp(), LEASE, "dead")
    clock.advance(ON_TIME + LEASE)
    outbox = Outbox()
    await outbox.scheduler(store, rules, "b", clock).tick()
    assert outbox.sent == [("b", "daily-costs", NINE, True)]


async def test_a_report_removed_from_the_rules_is_kept_as_a_dead_letter(
    opened: Callable[[], Store], rules: Rules, tmp_path: Path
) -> None:
    store = opened()
    await store.open()
    assert await store.claim_report_slot("gone", NINE, "a", ["finops"])
    outbox = Outbox()
    await outbox.scheduler(store, rules, "a", Clock()).tick()
    assert outbox.calls == []
    [letter] = await store.dead_letters()
    assert (letter.alertname, letter.error) == (
        "gone",
        "report 'gone' is not in the rules any more",
    )
