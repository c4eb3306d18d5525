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
import contextlib
import itertools
import json
import string
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.types import ASGIApp, Message, Scope

from receiver.config.secrets import SecretStore
from receiver.models import Alert
from receiver.runtime import build_service
from receiver.server import Service
from receiver.store.base import IngestResult, Store, StoreError
from tests.service import TOKEN, Sent, make_settings

ROUTES = Path(__file__).resolve().parents[1] / "rules" / "routes.yaml"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
MAX_BODY = 64 * 1024  # a smaller ALERT_ROUTER_MAX_BODY_BYTES keeps "huge" cheap to build

# Fixed, so CI runs the same cases every time; no deadline (a fsync can take a while on a
# busy machine); examples are big on purpose.
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)


def fuzz(examples: int) -> settings:
    return settings(FUZZ, max_examples=examples)


CASES: Counter[str] = Counter()


# -- the service under test ----------------------------------------------------------------------


@dataclass
class RecordingStore:
    """The real store, recording every alert ingest stored; `failing` makes writes fail."""

    inner: Store
    stored: list[Alert] = field(default_factory=list)
    failing: bool = False

    async def ingest(self, alerts: Sequence[Alert], now: float, window: float) -> IngestResult:
        if self.failing:
            raise StoreError("disk full (injected)")
        result = await self.inner.ingest(alerts, now, window)
        self.stored.extend(alerts)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Router:
    """The running service and a client for it, on one event loop."""

    def __init__(
        self,
        service: Service,
        store: RecordingStore,
        runner: asyncio.Runner,
        client: httpx.AsyncClient,
    ) -> None:
        self.service = service
        self.store = store
        self.runner = runner
        self.client = client

    def __repr__(self) -> str:
        # Hypothesis prints the test's arguments, this fixture too: keep it short.
        return "Router(in-process alert-router)"

    def post(
        self,
        body: bytes | list[bytes],
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """POST /alerts; a list of chunks is sent chunked, without Content-Length."""

        async def chunks(parts: list[bytes]) -> AsyncIterator[bytes]:
            for part in parts:
                yield part

        async def send() -> httpx.Response:
            content = chunks(body) if isinstance(body, list) else body
            return await self.client.post(
                "/alerts", content=content, headers=AUTH if headers is None else headers
            )

        return self.runner.run(send())

    def post_json(self, payload: Any) -> httpx.Response:
        # The standard library's encoder: it writes integers of any size (orjson refuses).
        return self.post(json.dumps(payload, ensure_ascii=False).encode())

    def depths(self) -> dict[str, int]:
        return self.runner.run(self.store.inner.depths())


@contextlib.asynccontextmanager
async def _running(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    """The app's lifespan, driven as a server drives it (ASGI lifespan messages), and a
    client that talks to the app in-process."""
    to_app: asyncio.Queue[Message] = asyncio.Queue()
    from_app: asyncio.Queue[Message] = asyncio.Queue()
    scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}

    async def serve() -> None:
        await app(scope, to_app.get, from_app.put)

    task = asyncio.create_task(serve())
    await to_app.put({"type": "lifespan.startup"})
    started = await from_app.get()
    assert started["type"] == "lifespan.startup.complete", started
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
            yield client
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        stopped = await from_app.get()
        await task
        assert stopped["type"] == "lifespan.shutdown.complete", stopped


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
    lifespan = _running(service.app())
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


# -- strategies ----------------------------------------------------------------------------------

_ids = itertools.count()

# Text of every kind: controls, NUL, combining marks, RTL, emoji, private use (no lone
# surrogates: those cannot be encoded; they get their own test below).
odd_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
label_name = st.one_of(
    st.sampled_from(["service", "namespace", "severity", "team", "Hostname", "gpu", "pod"]),
    odd_text.filter(bool),
)
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    odd_text,
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(odd_text, inner, max_size=5)
    ),
    max_leaves=25,
)


def rfc3339(value: datetime, offset_minutes: int) -> str:
    tz = timezone(timedelta(minutes=offset_minutes))
    return value.astimezone(tz).isoformat()


# Valid RFC 3339 timestamps: any instant of years 1 to 9999 at any UTC offset, mostly
# recent ones (what Alertmanager sends).
good_time = st.builds(
    rfc3339,
    st.one_of(
        st.datetimes(
            min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
        ),
        st.datetimes(
            min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
        ),
    ),
    st.integers(min_value=-18 * 60 + 1, max_value=18 * 60 - 1),
)
bad_time = st.one_of(
    st.sampled_from(
        [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-02-30T00:00:00Z",
            "2024-01-01T25:00:00Z",
            "2024-01-01T00:00:00",  # no timezone
            "2024-01-01",  # a date, no time: midnight, but no timezone
            "2024-01-01T00:00:00+24:00",
            "10000-01-01T00:00:00Z",
            # Valid RFC 3339, but outside what a datetime holds once turned into UTC.
            "9999-12-31T23:00:00-05:00",
            "0001-01-01T00:30:00+01:00",
            "P1D",
        ]
    ),
    odd_text.filter(lambda s: not s[:1].isdigit()),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(odd_text, st.integers(), max_size=2),
    st.booleans(),
)


@st.composite
def valid_alert(draw: st.DrawFn) -> dict[str, Any]:
    """An alert the router must accept: any labels (with an alertname), any annotations,
    valid timestamps; a unique `fuzz_id` label so each one can be found in the store."""
    labels = draw(st.dictionaries(label_name, odd_text, max_size=6))
    labels["alertname"] = draw(odd_text.filter(bool))
    unique = next(_ids)
    labels["fuzz_id"] = str(unique)
    alert: dict[str, Any] = {
        "status": draw(st.sampled_from(["firing", "resolved"])),
        "labels": labels,
        "startsAt": draw(good_time),
    }
    if draw(st.booleans()):
        alert["annotations"] = draw(st.dictionaries(odd_text, odd_text, max_size=4))
    if draw(st.booleans()):
        alert["endsAt"] = draw(st.one_of(st.just("0001-01-01T00:00:00Z"), good_time))
    if draw(st.booleans()):
        alert["generatorURL"] = draw(odd_text)
    if draw(st.booleans()):
        prefix = draw(st.text(string.hexdigits, max_size=8))
        alert["fingerprint"] = f"{prefix}{unique:08x}"
    if draw(st.booleans()):  # Alertmanager keeps adding fields: ignored
        alert[draw(st.sampled_from(["routeLabels", "notification_reason", "x"]))] = draw(json_value)
    return alert


@st.composite
def invalid_alert(draw: st.DrawFn) -> Any:
    """An alert the router must reject (and only it): one thing wrong with it."""
    base = draw(valid_alert())
    kind = draw(
        st.sampled_from(
            [
                "not an object",
                "no status",
                "bad status",
                "no labels",
                "empty labels",
                "labels not a mapping",
                "no alertname",
                "empty alertname",
                "label value not a string",
                "annotation value not a string",
                "no startsAt",
                "bad startsAt",
                "bad endsAt",
            ]
        )
    )
    if kind == "not an object":
        return draw(st.one_of(json_scalar, st.lists(json_scalar, max_size=3)))
    if kind == "no status":
        del base["status"]
    elif kind == "bad status":
        base["status"] = draw(
            st.one_of(
                st.sampled_from(["FIRING", "firing ", "pending", "", "Resolved"]),
                st.integers(),
                st.none(),
            )
        )
    elif kind == "no labels":
        del base["labels"]
    elif kind == "empty labels":
        base["labels"] = {}
    elif kind == "labels not a mapping":
        base["labels"] = draw(st.one_of(st.lists(odd_text, max_size=3), odd_text, st.integers()))
    elif kind == "no alertname":
        del base["labels"]["alertname"]
    elif kind == "empty alertname":
        base["labels"]["alertname"] = ""
    elif kind == "label value not a string":
        base["labels"][draw(label_name)] = draw(
            st.one_of(st.integers(), st.none(), st.lists(st.integers(), max_size=2))
        )
    elif kind == "annotation value not a string":
        base["annotations"] = {"summary": draw(st.one_of(st.integers(), st.none()))}
    elif kind == "no startsAt":
        del base["startsAt"]
    elif kind == "bad startsAt":
        base["startsAt"] = draw(bad_time)
    elif kind == "bad endsAt":
        base["endsAt"] = draw(bad_time)
    return base


def envelope(alerts: list[Any], **extra: Any) -> dict[str, Any]:
    return {
        "version": "4",
        "status": "firing",
        "receiver": "alert-router",
        "groupKey": "{}:{}",
        "externalURL": "http://alertmanager.test",
        "alerts": alerts,
        **extra,
    }


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


ALERT_FIELDS = (
    "status",
    "labels",
    "annotations",
    "startsAt",
    "endsAt",
    "generatorURL",
    "fingerprint",
)
ENVELOPE_FIELDS = (
    "version",
    "status",
    "receiver",
    "groupKey",
    "externalURL",
    "commonLabels",
    "truncatedAlerts",
)


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


# RFC 3339 timestamps of every year, with offsets up to a day: the extremes of what a
# timestamp can say, where conversions to UTC and back leave the usual ranges.
edge_time = st.one_of(
    st.sampled_from(
        [
            "0001-01-01T00:00:00Z",
            "0001-01-01T00:30:00+01:00",
            "0999-06-01T12:00:00Z",
            "1969-12-31T23:59:59.999999Z",
            "1970-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999Z",
            "9999-12-31T23:00:00-05:00",
        ]
    ),
    st.builds(
        "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}{}".format,
        st.integers(min_value=1, max_value=9999),
        st.integers(min_value=1, max_value=12),
        st.integers(min_value=1, max_value=28),
        st.integers(min_value=0, max_value=23),
        st.integers(min_value=0, max_value=59),
        st.integers(min_value=0, max_value=59),
        st.one_of(
            st.just("Z"),
            st.builds(
                "{}{:02d}:{:02d}".format,
                st.sampled_from("+-"),
                st.integers(min_value=0, max_value=23),
                st.integers(min_value=0, max_value=59),
            ),
        ),
    ),
)


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
        "labels": {"alertname": "Edge", "fuzz_id": str(next(_ids))},
        "startsAt": starts,
    }
    if ends is not None:
        edge["endsAt"] = ends
    plain = {
        "status": "firing",
        "labels": {"alertname": "Plain", "fuzz_id": str(next(_ids))},
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
