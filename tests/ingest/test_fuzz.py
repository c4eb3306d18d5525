"""Hostile input against the real app, property-based (hypothesis).

The service is built as `serve` builds it (receiver.runtime.build_service: SQLite store in
a temporary directory, the shipped rules, dry-run notifiers) and driven in-process through
httpx.ASGITransport, its lifespan (store, pipeline, rules watcher) running on one event
loop for the whole module. The store is wrapped to record what ingest stored and to fail on
demand.

Properties: random JSON, wrong types, huge and deeply nested bodies, odd unicode, bad
timestamps, missing fields, wrong tokens and content types never get a 5xx (unless the
store fails: then exactly 503), never crash the service, and never lose a valid alert of a
partly invalid payload: every valid alert is accepted and stored, every invalid one is
listed in `rejected` with its index. Afterwards every accepted alert has been routed (no
input wedges the pipeline). The number of cases tried is printed (`pytest -s`).
"""

from __future__ import annotations

import asyncio
import json
import string
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.config.secrets import SecretStore
from receiver.models import Alert
from receiver.runtime import build_service
from tests.ingest.harness import RecordingStore, Router, running
from tests.ingest.strategies import (
    ALERT_FIELDS,
    ENVELOPE_FIELDS,
    edge_time,
    envelope,
    fuzz,
    fuzz_ids,
    invalid_alert,
    json_value,
    valid_alert,
)
from tests.service import TOKEN, Sent, make_settings

ROUTES = Path(__file__).resolve().parents[2] / "rules" / "routes.yaml"
MAX_BODY = 64 * 1024  # a smaller ALERT_ROUTER_MAX_BODY_BYTES keeps "huge" cheap to build

CASES: Counter[str] = Counter()


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    tmp = tmp_path_factory.mktemp("fuzz")
    settings_ = make_settings(tmp, ROUTES, max_body_bytes=MAX_BODY)
    service = build_service(
        settings_, dry_run=True, emit=Sent(), secrets=SecretStore(settings_.secrets_dir, environ={})
    )
    store = RecordingStore(service.store)
    service.store = store
    runner = asyncio.Runner()
    lifespan = running(service.app())
    client = runner.run(lifespan.__aenter__())
    try:
        yield Router(service, store, runner, client)
    finally:
        runner.run(lifespan.__aexit__(None, None, None))
        runner.close()
        print(
            f"\n[fuzz] cases tried: {sum(CASES.values())} "
            + "("
            + ", ".join(f"{k} {v}" for k, v in sorted(CASES.items()))
            + ")"
        )


def check_answer(response: httpx.Response, alerts: int | None = None) -> dict[str, Any]:
    """Every answer: no 5xx, JSON, the documented shape."""
    assert response.status_code < 500, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body: dict[str, Any] = response.json()
    if response.status_code == 200:
        assert set(body) == {"accepted", "duplicates", "rejected"}, body
        if alerts is not None:
            assert body["accepted"] + body["duplicates"] + len(body["rejected"]) == alerts
    else:
        assert isinstance(body.get("error"), str) and body["error"], body
        assert isinstance(body.get("details"), list), body
    return body


def same_alert(sent: dict[str, Any], stored: Alert) -> bool:
    return bool(dict(stored.labels) == sent["labels"] and stored.status == sent["status"])


# -- properties ----------------------------------------------------------------------------------


@fuzz(400)
@given(valid=st.lists(valid_alert(), max_size=6), invalid=st.lists(invalid_alert(), max_size=6))
def test_mixed_payload_keeps_every_valid_alert(
    router: Router, valid: list[dict[str, Any]], invalid: list[Any]
) -> None:
    CASES["mixed payloads"] += 1
    # Interleave: valid and invalid alerts at every position.
    order = sorted(
        [(i * 2, True, a) for i, a in enumerate(valid)]
        + [(i * 2 + 1, False, a) for i, a in enumerate(invalid)]
    )
    alerts = [alert for _, _, alert in order]
    bad_positions = [index for index, (_, ok, _) in enumerate(order) if not ok]
    before = len(router.store.stored)
    response = router.post_json(envelope(alerts))
    body = check_answer(response, len(alerts))
    if not valid:
        # Nothing to keep: 400 when something was rejected, 200 for an empty list.
        assert response.status_code == (400 if invalid else 200)
        if invalid:
            assert [r["index"] for r in body["details"]] == bad_positions
        return
    assert response.status_code == 200
    assert body["accepted"] == len(valid), body  # each has its own fuzz_id: no duplicates
    assert [r["index"] for r in body["rejected"]] == bad_positions, body
    assert all(isinstance(r["reason"], str) and r["reason"] for r in body["rejected"])
    stored = router.store.stored[before:]
    assert len(stored) == len(valid)
    for sent in valid:
        assert any(same_alert(sent, alert) for alert in stored), sent["labels"]


@fuzz(250)
@given(payload=json_value)
def test_random_json_never_a_5xx(router: Router, payload: Any) -> None:
    CASES["random JSON"] += 1
    check_answer(router.post_json(payload))


@fuzz(200)
@given(
    alerts=st.lists(
        st.one_of(json_value, st.dictionaries(st.sampled_from(ALERT_FIELDS), json_value)),
        max_size=5,
    ),
    extra=st.dictionaries(st.sampled_from(ENVELOPE_FIELDS), json_value, max_size=4),
)
def test_wrong_types_in_every_field_never_a_5xx(
    router: Router, alerts: list[Any], extra: dict[str, Any]
) -> None:
    CASES["wrong types"] += 1
    body = check_answer(router.post_json(envelope(alerts, **extra)))
    if "error" not in body:
        assert body["accepted"] + body["duplicates"] + len(body["rejected"]) == len(alerts)


@fuzz(150)
@given(starts=edge_time, ends=st.none() | edge_time, status=st.sampled_from(["firing", "resolved"]))
def test_timestamps_at_the_edges(
    router: Router, starts: str, ends: str | None, status: str
) -> None:
    """Each alert is accepted or rejected with a reason, the valid one beside it always
    accepted; never a 5xx."""
    CASES["edge timestamps"] += 1
    edge: dict[str, Any] = {
        "status": status,
        "labels": {"alertname": "Edge", "fuzz_id": str(next(fuzz_ids))},
        "startsAt": starts,
    }
    if ends is not None:
        edge["endsAt"] = ends
    plain = {
        "status": "firing",
        "labels": {"alertname": "Plain", "fuzz_id": str(next(fuzz_ids))},
        "startsAt": "2024-06-01T00:00:00Z",
    }
    response = router.post_json(envelope([edge, plain]))
    body = check_answer(response, 2)
    assert response.status_code == 200, body
    assert body["accepted"] == 2 - len(body["rejected"])
    assert [r["index"] for r in body["rejected"]] in ([], [0]), body


@fuzz(60)
@given(data=st.binary(max_size=2000))
def test_random_bytes_never_a_5xx(router: Router, data: bytes) -> None:
    CASES["random bytes"] += 1
    check_answer(router.post(data))


@fuzz(30)
@given(depth=st.integers(min_value=1, max_value=20_000), kind=st.sampled_from("[{a"))
def test_deeply_nested_bodies_never_a_5xx(router: Router, depth: int, kind: str) -> None:
    CASES["deeply nested"] += 1
    if kind == "[":
        body = b"[" * depth + b"]" * depth
    elif kind == "{":
        body = b'{"a":' * depth + b"1" + b"}" * depth
    else:  # nested inside an alert's labels
        nested = b'{"a":' * depth + b'"x"' + b"}" * depth
        body = (
            b'{"version":"4","alerts":[{"status":"firing","startsAt":"2024-01-01T00:00:00Z",'
            b'"labels":{"alertname":"Deep","x":' + nested + b"}}]}"
        )
    if len(body) > MAX_BODY:
        assert router.post(body).status_code == 413
        return
    response = router.post(body)
    answer = check_answer(response)
    if kind == "a":  # the alert is rejected, or the whole body past orjson's depth limit
        assert response.status_code == 400
        assert answer["error"] in ("no valid alert in the webhook", "body is not valid JSON")


@fuzz(20)
@given(
    size=st.integers(min_value=MAX_BODY + 1, max_value=4 * MAX_BODY),
    declared=st.booleans(),
)
def test_huge_bodies_get_413(router: Router, size: int, declared: bool) -> None:
    CASES["huge bodies"] += 1
    alert = {
        "status": "firing",
        "labels": {"alertname": "Huge"},
        "startsAt": "2024-01-01T00:00:00Z",
    }
    payload = orjson.dumps(envelope([alert], padding="x" * size))
    before = len(router.store.stored)
    if declared:
        response = router.post(payload)
    else:  # chunked, no Content-Length: refused while reading, not after
        response = router.post([payload[i : i + 8192] for i in range(0, len(payload), 8192)])
    assert response.status_code == 413
    check_answer(response)
    assert len(router.store.stored) == before


@fuzz(100)
@given(
    header=st.one_of(
        st.none(),
        st.builds(
            lambda scheme, token: f"{scheme}{token}",
            st.sampled_from(["Bearer ", "bearer ", "Basic ", "", "Bearer", "Token "]),
            st.text(string.printable.strip() + " ", max_size=40),
        ),
        st.just(f"Bearer {TOKEN}x"),
        st.just(f"Bearer {TOKEN[:-1]}"),
        st.just(f"Basic {TOKEN}"),
    ).filter(lambda h: h is None or h.partition(" ")[2].strip() != TOKEN or "earer" not in h)
)
def test_wrong_tokens_get_401_and_store_nothing(router: Router, header: str | None) -> None:
    CASES["wrong tokens"] += 1
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Authorization"] = header
    before = len(router.store.stored)
    alert = {"status": "firing", "labels": {"alertname": "X"}, "startsAt": "2024-01-01T00:00:00Z"}
    response = router.post(orjson.dumps(envelope([alert])), headers)
    assert response.status_code == 401
    check_answer(response)
    assert len(router.store.stored) == before


@fuzz(40)
@given(
    content_type=st.one_of(
        st.sampled_from(
            [
                "application/json",
                "application/json; charset=utf-8",
                "APPLICATION/JSON",
                "application/vnd.alertmanager+json",
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
                "",
                "json",
            ]
        ),
        st.text(string.printable.strip() + " ", max_size=30),
    )
)
def test_content_types(router: Router, content_type: str) -> None:
    CASES["content types"] += 1
    media = content_type.split(";", 1)[0].strip().lower()
    is_json = media == "application/json" or media.endswith("+json")
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type}
    response = router.post(orjson.dumps(envelope([])), headers)
    check_answer(response)
    assert response.status_code == (200 if is_json else 415)


def test_lone_surrogates_and_invalid_utf8_get_400(router: Router) -> None:
    bodies = [
        b'{"alerts": [{"labels": {"alertname": "\\ud800"}}]}',
        b'{"alerts": [], "x": "\xff\xfe"}',
        '{"alerts": []}'.encode("utf-16"),
    ]
    for body in bodies:
        CASES["encodings"] += 1
        response = router.post(body)
        assert response.status_code == 400, (body, response.text)
        check_answer(response)


@fuzz(30)
@given(valid=st.lists(valid_alert(), min_size=1, max_size=4))
def test_store_failure_is_the_only_5xx(router: Router, valid: list[dict[str, Any]]) -> None:
    CASES["store failing"] += 1
    router.store.failing = True
    try:
        response = router.post_json(envelope(valid))
    finally:
        router.store.failing = False
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "store unavailable; retry"
    assert "disk full" in json.dumps(body)


def test_every_accepted_alert_is_routed_afterwards(router: Router) -> None:
    """Nothing the fuzzing stored wedges the pipeline: the inbox drains."""
    deadline = time.monotonic() + 30
    depths = router.depths()
    while depths["inbox"] and time.monotonic() < deadline:
        time.sleep(0.2)
        depths = router.runner.run(_settle(router))
    print(f"\n[fuzz] alerts stored: {len(router.store.stored)}, inbox left: {depths['inbox']}")
    assert depths["inbox"] == 0, depths
    ready = router.runner.run(router.service.store.check_writable())
    assert ready is None
    assert router.runner.run(_healthy(router)) == 200


async def _settle(router: Router) -> dict[str, int]:
    await asyncio.sleep(0.3)  # let the pipeline's loops run
    return await router.store.inner.depths()


async def _healthy(router: Router) -> int:
    response = await router.client.get("/readyz")
    return response.status_code
