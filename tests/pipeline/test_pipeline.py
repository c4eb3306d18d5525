"""The Pipeline's lifecycle: notifiers replaced or removed by a reload are closed, each
once, after the loop that used them ended; a close that hangs does not hold up `stop`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from receiver.config.rules import Rules, parse_rules
from receiver.metrics import Metrics
from receiver.models import Alert, Notification, labels_fingerprint
from receiver.notify.base import Notifier, Ref
from receiver.pipeline.pipeline import Pipeline
from receiver.pipeline.tuning import Tuning
from receiver.store import open_store
from receiver.store.base import Store

DESTINATIONS = {
    "hook": "hook: {slack: {webhook_url: {secret: slack-webhook-url}, max_per_second: 0}}",
    "pd": "pd: {pagerduty: {routing_key: {secret: pagerduty-key}, max_per_minute: 0}}",
}
FAST = Tuning(poll_interval=0.02, housekeeping_interval=0.05, close_timeout=0.2)


class RecordingNotifier:
    """Sends nothing; records what the pipeline asks of it. `blocking`: `notify` waits
    until cancelled; `hanging`: so does `aclose`."""

    max_batch = 1

    def __init__(self, name: str, *, blocking: bool = False, hanging: bool = False) -> None:
        self.name = name
        self.events: list[str] = []
        self.sending = asyncio.Event()
        self._blocking = blocking
        self._hanging = hanging

    async def notify(self, batch: Sequence[Notification]) -> Sequence[Ref | None]:
        self.events.append("notify")
        self.sending.set()
        if self._blocking:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.events.append("notify cancelled")
                raise
        return [None for _ in batch]

    def render(self, batch: Sequence[Notification]) -> list[dict[str, Any]]:
        return []

    async def aclose(self) -> None:
        self.events.append("aclose")
        if self._hanging:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.events.append("aclose cancelled")
                raise


class Factory:
    """Builds a new RecordingNotifier per destination on every call, as a reload does."""

    def __init__(self, **options: bool) -> None:
        self.built: list[RecordingNotifier] = []
        self._options = options

    def __call__(self, rules: Rules) -> Mapping[str, Notifier]:
        notifiers = {name: RecordingNotifier(name, **self._options) for name in rules.destinations}
        self.built.extend(notifiers.values())
        return notifiers


def rules_to(*names: str) -> Rules:
    """Rules with the destinations `names` and one route sending everything to them."""
    defined = "".join(f"  {DESTINATIONS[name]}\n" for name in names)
    routes = f"routes:\n  - name: everything\n    to: [{', '.join(names)}]\n"
    return parse_rules(f"destinations:\n{defined}{routes}", Path("routes.yaml"))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    yield open_store(str(tmp_path / "state.db"))


def make_alert(name: str) -> Alert:
    labels = {"alertname": name}
    starts_at = datetime(2026, 11, 29, 2, 39, 35, tzinfo=UTC)
    return Alert(labels_fingerprint(labels), "firing", labels, {}, starts_at=starts_at)


async def test_each_notifier_a_reload_replaced_is_closed_once(store: Store) -> None:
    await store.open()
    rules = rules_to("hook", "pd")
    factory = Factory()
    pipeline = Pipeline(store, lambda: rules, factory, Metrics(), tuning=FAST)
    await pipeline.start()
    pipeline.apply_rules(rules)  # a reload: every destination gets a new notifier
    pipeline.apply_rules(rules)
    await pipeline.stop()
    await store.close()
    assert len(factory.built) == 6
    assert [n.events for n in factory.built] == [["aclose"]] * 6


async def test_a_removed_destination_is_closed_after_its_send_was_cancelled(
    store: Store,
) -> None:
    await store.open()
    current = rules_to("hook", "pd")
    factory = Factory(blocking=True)
    pipeline = Pipeline(store, lambda: current, factory, Metrics(), tuning=FAST)
    await pipeline.start()
    await store.ingest([make_alert("Stuck")], time.time(), 0.0)
    pipeline.wake()
    hook, pd = factory.built
    await asyncio.wait_for(pd.sending.wait(), 5)
    current = rules_to("hook")
    pipeline.apply_rules(current)
    await pipeline.stop()
    await store.close()
    # The loop that was sending was cancelled before its notifier was closed.
    assert pd.events == ["notify", "notify cancelled", "aclose"]
    assert factory.built[2].events == ["aclose"]  # hook's notifier after the reload
    assert hook.events.count("aclose") == 1


async def test_a_close_that_hangs_does_not_hold_up_stop(store: Store) -> None:
    await store.open()
    rules = rules_to("hook", "pd")
    factory = Factory(hanging=True)
    pipeline = Pipeline(store, lambda: rules, factory, Metrics(), tuning=FAST)
    await pipeline.start()
    pipeline.apply_rules(rules)
    started = time.monotonic()
    await pipeline.stop()
    elapsed = time.monotonic() - started
    await store.close()
    assert elapsed < FAST.close_timeout + 1.0
    # Every close was started and, past the bound, cancelled: none is left pending.
    assert [n.events for n in factory.built] == [["aclose", "aclose cancelled"]] * 4
