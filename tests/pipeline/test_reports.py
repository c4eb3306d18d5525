"""The report scheduler on real stores: a slot is sent once, by one replica, late after a
restart across it, and skipped when missed by more than its window."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from receiver.config.reports import ReportSpec
from receiver.config.rules import Rules, parse_rules
from receiver.notify.base import NotifyError, Ref
from receiver.notify.slack.bot import ChartNotUploaded
from receiver.pipeline.reports import ATTEMPTS, ReportScheduler, post_with_retries
from receiver.reports.model import Report
from receiver.reports.schedule import Slot
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
    """What the schedulers delivered: (replica, report name, slot time, late)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, datetime, bool]] = []

    def scheduler(
        self,
        store: Store,
        rules: Rules,
        owner: str,
        clock: Callable[[], datetime],
        stopping: asyncio.Event | None = None,
    ) -> ReportScheduler:
        async def build(name: str, spec: ReportSpec, slot: Slot) -> Report:
            start = slot.at - timedelta(seconds=spec.window)
            return Report(name, start, slot.at, spec.timezone, slot.late, tuple(spec.sections))

        async def deliver(name: str, spec: ReportSpec, report: Report) -> None:
            self.sent.append((owner, name, report.end, report.late))

        return ReportScheduler(
            store, lambda: rules, build, deliver, owner=owner, stopping=stopping or asyncio.Event(),
            clock=clock,
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


# -- sending, with retries -----------------------------------------------------------------


class FlakySlack:
    """Answers each post with the next of `answers` (an error to raise, or None: posted)."""

    def __init__(self, *answers: NotifyError | None) -> None:
        self.answers = list(answers)
        self.calls: list[Ref | None] = []

    async def post(self, posted: Ref | None) -> Ref:
        self.calls.append(posted)
        answer = self.answers.pop(0)
        if answer is not None:
            raise answer
        return {"channel": "C1", "ts": "1.0", "kind": "report"}


REF = {"channel": "C1", "ts": "1.0"}


async def test_a_temporary_failure_is_retried_after_retry_after() -> None:
    slack = FlakySlack(NotifyError("rate limited", recoverable=True, retry_after=0.01), None)
    assert await post_with_retries("finops", "daily-costs", slack.post, asyncio.Event())
    assert slack.calls == [None, None]


async def test_a_chart_that_failed_alone_is_sent_again_alone() -> None:
    slack = FlakySlack(
        ChartNotUploaded("upload 503", REF, recoverable=True, retry_after=0.01), None
    )
    assert await post_with_retries("finops", "daily-costs", slack.post, asyncio.Event())
    assert slack.calls == [None, REF]  # the second try names the report already posted


async def test_a_permanent_failure_is_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    slack = FlakySlack(NotifyError("channel_not_found", recoverable=False))
    assert not await post_with_retries("finops", "daily-costs", slack.post, asyncio.Event())
    assert slack.calls == [None]
    [record] = [r for r in caplog.records if r.message == "report not delivered"]
    assert record.__dict__["destination"] == "finops"
    assert record.__dict__["error"] == "channel_not_found"


async def test_tries_end_after_the_last_attempt() -> None:
    errors = [NotifyError("503", recoverable=True, retry_after=0.01) for _ in range(ATTEMPTS)]
    slack = FlakySlack(*errors)
    assert not await post_with_retries("finops", "daily-costs", slack.post, asyncio.Event())
    assert len(slack.calls) == ATTEMPTS
