"""Finding episodes on a real store (both stores): the filter, status, destination, since
and limit, across pages; and the filter's syntax."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from receiver.events import EventKind
from receiver.history.query import find_episodes, parse_filter
from receiver.matchers import Matcher, MatchType
from receiver.store.base import Store
from tests.history.support import delivered_then_resolved, event, meta


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Alertmanager's API form, with braces and commas.
        ('{a="b", c=~"d.*"}', [("a", "=", "b"), ("c", "=~", "d.*")]),
        # amtool's form: spaces between matchers, quotes optional.
        ('a="b" c!="d" e!~f', [("a", "=", "b"), ("c", "!=", "d"), ("e", "!~", "f")]),
        # Spaces around the operator; a comma, a space and an escaped quote in a value.
        ('service = "a, b \\"c\\""', [("service", "=", 'a, b "c"')]),
        ("", []),
        ("{}", []),
        ('  {team="ml",}  ', [("team", "=", "ml")]),
    ],
)
def test_parse_filter(text: str, expected: list[tuple[str, str, str]]) -> None:
    assert [(m.name, m.type.value, m.value) for m in parse_filter(text)] == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{a="b"', "unbalanced braces"),
        ("team", "cannot read a matcher at 'team'"),
        ('a=="b"', "cannot read a matcher"),
        ('a="b" 1x="c"', "cannot read a matcher at '1x=\"c\"'"),
        ('a=~"("', "invalid regex"),
        ('a="b', "cannot read a matcher"),
    ],
)
def test_parse_filter_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_filter(text)


async def seed(store: Store) -> None:
    """Four episodes: GPU alerts of two teams, delivered and resolved or still failing."""
    done = meta("done", 1000.0, team="ml")
    await store.record_history([done], delivered_then_resolved(done))
    failing = meta("failing", 2000.0, team="ml")
    await store.record_history(
        [failing],
        [
            event(failing, 2001.0, EventKind.RECEIVED, status="firing"),
            event(failing, 2002.0, EventKind.DEDUP, "pd", reason="first_notification", sent=True),
            event(failing, 2003.0, EventKind.ATTEMPT, "pd", attempt=1, error="HTTP 503"),
        ],
    )
    other = meta("other", 3000.0, team="web", alertname="DiskFull")
    await store.record_history(
        [other],
        [
            event(other, 3001.0, EventKind.RECEIVED, status="firing"),
            event(other, 3002.0, EventKind.DEDUP, "slack", reason="first_notification", sent=True),
        ],
    )
    old = meta("old", 10.0, team="ml")
    await store.record_history([old], [event(old, 11.0, EventKind.RECEIVED, status="firing")])


async def test_find_by_matchers_status_destination_since_and_limit(store: Store) -> None:
    await seed(store)

    async def names(
        matchers: Sequence[Matcher] = (),
        status: str | None = None,
        destination: str | None = None,
        since: float = 100.0,
        limit: int = 10,
    ) -> list[str]:
        found = await find_episodes(
            store,
            matchers=matchers,
            status=status,
            destination=destination,
            since=since,
            limit=limit,
        )
        return [s.meta.fingerprint for s in found]

    assert await names() == ["other", "failing", "done"]  # latest changed first
    assert await names(since=0.0) == ["other", "failing", "done", "old"]
    assert await names(matchers=parse_filter('{team="ml"}')) == ["failing", "done"]
    assert await names(matchers=parse_filter('alertname=~"Disk.*"')) == ["other"]
    assert await names(matchers=parse_filter('team="ml" alertname!="HighGPUCost"')) == []
    assert await names(status="resolved") == ["done"]
    assert await names(status="firing") == ["other", "failing"]
    assert await names(destination="pd") == ["failing", "done"]
    assert await names(destination="pd", status="firing") == ["failing"]
    assert await names(destination="nowhere") == []
    assert await names(limit=1) == ["other"]
    assert await names(limit=0) == []
    ml = parse_filter('{team="ml"}')
    [failing] = await find_episodes(store, matchers=ml, status="firing", since=100.0, limit=5)
    assert [(o.destination, o.state, o.detail) for o in failing.outcomes] == [
        ("pd", "retrying", "HTTP 503")
    ]
    assert failing.meta == meta("failing", 2000.0, team="ml")


async def test_find_pages_through_many_episodes(store: Store) -> None:
    # 450 episodes, 150 of them at one same moment (straddling the pages); every third
    # one is team "pick".
    metas = [meta(f"e{i:03}", 1000.0, team="pick" if i % 3 == 0 else "skip") for i in range(450)]
    events = [
        event(m, 5000.0 if 100 <= i < 250 else 2000.0 + i, EventKind.RECEIVED, status="firing")
        for i, m in enumerate(metas)
    ]
    await store.record_history(metas, events)
    found = await find_episodes(store, matchers=parse_filter("team=pick"), since=0.0, limit=1000)
    assert sorted(s.meta.fingerprint for s in found) == [f"e{i:03}" for i in range(0, 450, 3)]
    assert [s.last_at for s in found] == sorted((s.last_at for s in found), reverse=True)
    limited = await find_episodes(store, matchers=parse_filter("team=pick"), since=0.0, limit=7)
    assert [s.meta.fingerprint for s in limited] == [s.meta.fingerprint for s in found[:7]]
    assert all(m.type is MatchType.EQUAL for m in parse_filter("team=pick"))
