"""An episode's summary: status, route, context, each destination's fate, the cost."""

from __future__ import annotations

from receiver.events import EventKind
from receiver.history.summary import Outcome, summarize
from tests.history.support import CONTEXT, delivered_then_resolved, event, meta, timeline


def test_a_delivered_then_resolved_episode() -> None:
    m = meta()
    summary = summarize(timeline(m, delivered_then_resolved(m)))
    assert summary.meta == m
    assert summary.status == "resolved"
    assert summary.last_at == 1121.0
    assert summary.route == "gpu-costs"
    assert summary.context == CONTEXT["values"]
    assert summary.cost_per_hour == 62.1
    assert summary.incident_cost == 2.07
    assert summary.outcomes == [
        Outcome("slack", "delivered", "", 1005.0, {"ts": "1.5"}),
        Outcome("pd", "delivered", "", 1009.0, {"dedup_key": "k"}),
    ]


def test_each_state_of_an_outcome() -> None:
    m = meta()
    events = [
        event(m, 1.0, EventKind.RECEIVED, status="firing"),
        event(m, 2.0, EventKind.ROUTED, route="", destinations=[]),
        # Suppressed by dedup.
        event(m, 3.0, EventKind.DEDUP, "quiet", reason="already_notified", sent=False),
        # Queued, not tried yet.
        event(m, 3.0, EventKind.DEDUP, "waiting", reason="first_notification", sent=True),
        # Failing, to be tried again.
        event(m, 3.0, EventKind.DEDUP, "flaky", reason="first_notification", sent=True),
        event(m, 4.0, EventKind.ATTEMPT, "flaky", attempt=1, error="HTTP 503"),
        # Failed for good.
        event(m, 3.0, EventKind.DEDUP, "broken", reason="first_notification", sent=True),
        event(m, 5.0, EventKind.DEAD_LETTER, "broken", error="HTTP 404", attempts=1),
        # Failed for good, then replayed from the page.
        event(m, 3.0, EventKind.DEDUP, "again", reason="first_notification", sent=True),
        event(m, 5.0, EventKind.DEAD_LETTER, "again", error="HTTP 404", attempts=1),
        event(m, 6.0, EventKind.REPLAYED, "again", by="ui:alice", dead_letter="7"),
    ]
    summary = summarize(timeline(m, events))
    assert summary.status == "firing"
    assert summary.route == ""
    assert summary.context == []
    assert summary.cost_per_hour is None
    assert summary.incident_cost is None
    assert summary.outcomes == [
        Outcome("quiet", "suppressed", "already_notified", 3.0),
        Outcome("waiting", "queued", "first_notification", 3.0),
        Outcome("flaky", "retrying", "HTTP 503", 4.0),
        Outcome("broken", "dead_letter", "HTTP 404", 5.0),
        Outcome("again", "queued", "replayed by ui:alice", 6.0),
    ]


def test_a_resolve_without_a_cost_and_events_that_change_no_outcome() -> None:
    m = meta()
    events = [
        event(m, 1.0, EventKind.RECEIVED, status="firing"),
        event(m, 2.0, EventKind.SILENCED, by="@bob", silence_id="s1", duration=3600),
        event(m, 3.0, EventKind.ACKNOWLEDGED, by="@bob", destination="pd"),
        event(m, 4.0, EventKind.RESOLVED, cost=None, duration=3.0, per_hour=None),
    ]
    summary = summarize(timeline(m, events))
    assert (summary.status, summary.incident_cost, summary.outcomes) == ("resolved", None, [])
