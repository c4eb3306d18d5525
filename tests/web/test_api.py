"""The JSON API's shapes, and its filters narrowing the list, on a real SqliteStore."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from receiver.events import EventKind
from tests.web.conftest import NOW, RULES, Web
from tests.web.seed import T0, dead_letter, delivered_episode, event, make_alert, record

GPU = make_alert("fp-gpu", "HighGPUCost", service="training", severity="critical")
IDLE = make_alert("fp-idle", "IdleGPU", service="inference", severity="warning")
OLD = make_alert("fp-old", "IdleGPU", starts=T0 - timedelta(days=2), service="batch")


@pytest.fixture
async def seeded(web: Web) -> Web:
    at = T0.timestamp()
    await record(web.store, GPU, delivered_episode(GPU, at + 60, cost=120.0, route="gpu-page"))
    idle = delivered_episode(IDLE, at, failures=0, cost=8.25)
    idle.append(event(IDLE, at + 600, EventKind.RECEIVED, status="resolved", source="alertmanager"))
    idle.append(event(IDLE, at + 600.5, EventKind.RESOLVED, cost=1.4, duration=600, per_hour=8.25))
    await record(web.store, IDLE, idle)
    old_at = OLD.starts_at.timestamp()
    await record(web.store, OLD, delivered_episode(OLD, old_at, failures=0))
    return web


async def names(web: Web, query: str = "") -> list[str]:
    response = await web.client.get("/api/v1/alerts" + query)
    assert response.status_code == 200, response.text
    return [a["fingerprint"] for a in response.json()["alerts"]]


async def test_the_list_is_latest_first_with_each_destinations_outcome(seeded: Web) -> None:
    body = (await seeded.client.get("/api/v1/alerts")).json()
    assert body["count"] == 3
    assert [a["fingerprint"] for a in body["alerts"]] == ["fp-idle", "fp-gpu", "fp-old"]
    gpu = body["alerts"][1]
    assert gpu["alertname"] == "HighGPUCost"
    assert gpu["labels"] == {
        "alertname": "HighGPUCost",
        "service": "training",
        "severity": "critical",
    }
    assert gpu["status"] == "firing"
    assert gpu["route"] == "gpu-page"
    assert gpu["cost_per_hour"] == 120.0
    assert gpu["started_at"] == "2026-03-02T09:30:00.000Z"
    [outcome] = gpu["outcomes"]
    assert (outcome["destination"], outcome["state"]) == ("finops-slack", "delivered")
    assert outcome["ref"] == {"channel": "C0GPUCOSTS1", "ts": "1700000000.000100"}
    idle = body["alerts"][0]
    assert idle["status"] == "resolved"
    assert idle["incident_cost"] == 1.4


FILTERS = [
    # Matchers, both of Alertmanager's forms.
    ('?filter=alertname="HighGPUCost"', ["fp-gpu"]),
    ('?filter={alertname="IdleGPU", service!="batch"}', ["fp-idle"]),
    ('?filter=severity=~"crit.*|warning"', ["fp-idle", "fp-gpu"]),
    ("?status=firing", ["fp-gpu", "fp-old"]),
    ("?status=resolved", ["fp-idle"]),
    ("?destination=finops-slack", ["fp-idle", "fp-gpu", "fp-old"]),
    ("?destination=oncall", []),
    # The old episode changed two days before the others.
    ("?since=12h", []),  # the clock is NOW, 15 hours after T0
    ("?since=2026-03-01T00:00:00Z", ["fp-idle", "fp-gpu"]),
    ("?limit=1", ["fp-idle"]),
]


@pytest.mark.parametrize(("query", "expected"), FILTERS)
async def test_filters_narrow_the_list(seeded: Web, query: str, expected: list[str]) -> None:
    assert await names(seeded, query) == expected


BAD = [
    ("?filter=alertname", "filter: "),
    ("?status=burning", "status: 'burning' is neither firing nor resolved"),
    ("?since=yesterday", "since: 'yesterday' is neither a duration"),
    ("?since=2026-03-01T00:00:00", "has no time zone"),
    ("?limit=0", "limit: '0' is not a number from 1 to 1000"),
    ("?limit=1001", "limit: '1001'"),
]


@pytest.mark.parametrize(("query", "message"), BAD)
async def test_a_bad_parameter_is_a_400_that_says_why(web: Web, query: str, message: str) -> None:
    response = await web.client.get("/api/v1/alerts" + query)
    assert response.status_code == 400
    assert message in response.json()["error"]


async def test_a_bad_filter_answers_the_parsers_message(web: Web) -> None:
    from receiver.history.query import parse_filter

    with pytest.raises(ValueError, match=r".") as raised:
        parse_filter("alertname")
    response = await web.client.get("/api/v1/alerts?filter=alertname")
    assert response.json()["error"] == f"filter: {raised.value}"


async def test_one_alert_has_its_timeline_in_order(seeded: Web) -> None:
    response = await seeded.client.get("/api/v1/alerts/fp-gpu")
    assert response.status_code == 200
    body = response.json()
    assert body["fingerprint"] == "fp-gpu"
    [episode] = body["episodes"]
    kinds = [e["kind"] for e in episode["events"]]
    assert kinds == ["received", "context", "routed", "dedup", "attempt", "delivered"]
    assert all(e["text"] for e in episode["events"])
    assert [e["at"] for e in episode["events"]] == sorted(e["at"] for e in episode["events"])
    attempt = episode["events"][4]
    assert attempt["destination"] == "finops-slack"
    assert attempt["data"]["http_status"] == 503
    links = {link["label"]: link for link in episode["links"]}
    assert links["Prometheus graph"]["url"] == GPU.generator_url
    assert links["Silence in Alertmanager"]["url"].startswith(
        "http://alertmanager.example:9093/#/silences/new?filter="
    )
    assert "ts 1700000000.000100" in links["Slack message (finops-slack)"]["note"]


async def test_an_alert_with_episodes_lists_the_newest_first(web: Web) -> None:
    first = make_alert("fp-x", "IdleGPU", starts=T0)
    second = make_alert("fp-x", "IdleGPU", starts=T0 + timedelta(hours=3))
    await record(web.store, first, delivered_episode(first, T0.timestamp(), failures=0))
    later = (T0 + timedelta(hours=3)).timestamp()
    await record(web.store, second, delivered_episode(second, later, failures=0))
    body = (await web.client.get("/api/v1/alerts/fp-x")).json()
    assert [e["episode"] for e in body["episodes"]] == [second.episode, first.episode]


async def test_an_unknown_alert_is_a_404(web: Web) -> None:
    response = await web.client.get("/api/v1/alerts/nope")
    assert response.status_code == 404
    assert response.json() == {"error": "no history of alert 'nope'"}


async def test_dead_letters(web: Web) -> None:
    letter = await dead_letter(web.store, GPU, "finops-slack", NOW, error="HTTP 404 no_service")
    body = (await web.client.get("/api/v1/dead-letters")).json()
    [item] = body["dead_letters"]
    assert item == {
        "id": letter,
        "destination": "finops-slack",
        "alertname": "HighGPUCost",
        "episode": GPU.episode,
        "status": "firing",
        "error": "HTTP 404 no_service",
        "attempts": 1,
        "failed_at": "2026-03-03T01:06:40.000Z",
    }
    assert len(body["csrf_token"]) == 64


async def test_status(seeded: Web) -> None:
    await dead_letter(seeded.store, GPU, "oncall", NOW)
    await seeded.store.pause_destination("oncall", NOW + 30)
    body = (await seeded.client.get("/api/v1/status")).json()
    assert body["queues"] == {"inbox": 0, "outbox": 0, "dead_letters": 1}
    assert set(body["destinations"]) == {"finops-slack", "oncall"}
    slack = body["destinations"]["finops-slack"]
    assert slack["kind"] == "slack webhook"
    assert slack["last_delivered_at"] is not None
    assert slack["last_error"] == "HTTP 503 Service Unavailable"
    assert body["destinations"]["oncall"]["kind"] == "pagerduty"
    rules = body["rules"]
    assert rules["path"].endswith("routes.yaml")
    assert rules["checksum"] == hashlib.sha256(RULES.encode()).hexdigest()
    assert rules["loaded_at"] is not None
    assert rules["last_error"] is None


async def test_the_api_reads_the_redis_store_as_well(redis_web: Web) -> None:
    web = redis_web
    at = T0.timestamp()
    await record(web.store, GPU, delivered_episode(GPU, at, cost=120.0, route="gpu-page"))
    await record(web.store, IDLE, delivered_episode(IDLE, at + 5, failures=0))
    assert await names(web) == ["fp-idle", "fp-gpu"]
    assert await names(web, '?filter=alertname="HighGPUCost"') == ["fp-gpu"]
    [episode] = (await web.client.get("/api/v1/alerts/fp-gpu")).json()["episodes"]
    assert [e["kind"] for e in episode["events"]][-2:] == ["attempt", "delivered"]
    letter = await dead_letter(web.store, GPU, "oncall", NOW)
    token = (await web.client.get("/api/v1/dead-letters")).json()["csrf_token"]
    retried = await web.client.post(
        f"/api/v1/dead-letters/{letter}/retry",
        headers={"Origin": "http://router.test", "X-CSRF-Token": token},
    )
    assert retried.json() == {"id": letter, "outcome": "queued"}
    assert await web.store.dead_letters() == []
