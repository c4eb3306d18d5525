"""Large groups: Alertmanager posts a whole group in one webhook (`max_alerts: 0`) and never
retries a 4xx, so the default body limit must hold a big group, a refusal must be counted,
and a webhook at the limit must fit in the pod's memory.

Figures are printed (`pytest -s`): bytes per alert, and the memory a webhook at the default
limit takes, in the parser and in the whole `serve` process.
"""

from __future__ import annotations

import gc
import socket
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from receiver.config.settings import DEFAULT_MAX_BODY_BYTES
from receiver.ingest.parse import parse_webhook
from receiver.metrics import WEBHOOK_REFUSALS, WEBHOOK_SOURCES
from tests.ingest.support import AUTH, large_group, metric
from tests.k8s.files import read_manifests
from tests.service import TOKEN, ServerProcess, ServerThread, make_settings, start_service
from tests.support import wait_until

JSON = {**AUTH, "Content-Type": "application/json"}
REFUSED = "alert_router_webhooks_refused_total"
# The limit before issue 14, which realistic groups pass at about 1,300 alerts.
OLD_LIMIT = 1024 * 1024


@pytest.fixture
def default_server(tmp_path: Path) -> Iterator[ServerThread]:
    """The real service with the default body limit."""
    settings = make_settings(tmp_path, Path("rules/routes.yaml"))
    assert settings.max_body_bytes == DEFAULT_MAX_BODY_BYTES
    running, _ = start_service(settings)
    yield running
    running.stop()


@pytest.fixture
def client(default_server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=default_server.url, timeout=60) as c:
        yield c


def _body_over(limit: int) -> bytes:
    """A realistic group just over `limit` bytes."""
    per_alert = len(orjson.dumps(large_group(100))) // 100
    body = orjson.dumps(large_group(limit // per_alert + 100))
    assert len(body) > limit
    return body


def _refusals(client: httpx.Client) -> dict[str, float]:
    """Refusals by reason, over every source (each reason x source series must exist)."""
    return {
        reason: sum(
            metric(client, REFUSED, f'reason="{reason}",source="{source}"')
            for source in WEBHOOK_SOURCES
        )
        for reason in WEBHOOK_REFUSALS
    }


def test_refusals_start_at_zero(client: httpx.Client) -> None:
    assert _refusals(client) == dict.fromkeys(WEBHOOK_REFUSALS, 0.0)


def test_a_group_of_2000_realistic_alerts_is_accepted_end_to_end(
    default_server: ServerThread, client: httpx.Client
) -> None:
    body = orjson.dumps(large_group(2000))
    print(f"\n[large groups] 2,000 alerts: {len(body):,} bytes, {len(body) // 2000} bytes an alert")
    assert len(body) > OLD_LIMIT
    r = client.post("/alerts", content=body, headers=JSON)
    assert r.status_code == 200, r.text[:300]
    assert r.json() == {"accepted": 2000, "duplicates": 0, "rejected": []}
    assert (
        metric(
            client, "alert_router_alerts_received_total", 'outcome="accepted",source="alertmanager"'
        )
        == 2000
    )
    # Every alert is routed on: nothing stays in the inbox.
    store = default_server.service.store
    wait_until(lambda: default_server.call(store.depths)["inbox"] == 0, timeout=60)
    assert _refusals(client) == dict.fromkeys(WEBHOOK_REFUSALS, 0.0)


def test_a_group_over_the_limit_is_413_and_counted(
    default_server: ServerThread, client: httpx.Client
) -> None:
    body = _body_over(DEFAULT_MAX_BODY_BYTES)
    r = client.post("/alerts", content=body, headers=JSON)
    assert r.status_code == 413
    assert r.json()["error"] == f"body larger than {DEFAULT_MAX_BODY_BYTES} bytes"
    assert "ALERT_ROUTER_MAX_BODY_BYTES" in r.json()["details"][0]
    assert _refusals(client) == {**dict.fromkeys(WEBHOOK_REFUSALS, 0.0), "too_large": 1.0}
    assert metric(client, "alert_router_webhooks_total", 'code="413",source="unknown"') == 1
    assert default_server.call(default_server.service.store.depths)["inbox"] == 0


def _head(length: str | None) -> bytes:
    framing = f"Content-Length: {length}" if length else "Transfer-Encoding: chunked"
    return (
        b"POST /alerts HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n".encode()
        + framing.encode()
        + b"\r\n\r\n"
    )


def test_a_declared_oversize_body_is_413_before_it_is_sent(
    default_server: ServerThread, client: httpx.Client
) -> None:
    # Announce one byte over the limit and send none of it: the answer comes anyway.
    with socket.create_connection(("127.0.0.1", default_server.port), timeout=10) as sock:
        sock.sendall(_head(str(DEFAULT_MAX_BODY_BYTES + 1)))
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert _refusals(client)["too_large"] == 1


def test_a_streamed_oversize_body_is_413_before_it_ends(
    default_server: ServerThread, client: httpx.Client
) -> None:
    # Chunked, no Content-Length: send the limit and one chunk more, never the last chunk.
    # The router answers at the chunk that crosses the limit, not at the body's end.
    chunk = b" " * 65536
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    with socket.create_connection(("127.0.0.1", default_server.port), timeout=10) as sock:
        sock.sendall(_head(None))
        sent = 0
        while sent <= DEFAULT_MAX_BODY_BYTES:
            sock.sendall(frame)
            sent += len(chunk)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert _refusals(client)["too_large"] == 1


def test_parsing_a_webhook_at_the_limit_holds_few_copies_of_it() -> None:
    """The parser's peak, the body included: the decoder builds no document of its own
    (orjson's yyjson document alone peaks near 15 times the body)."""
    body = orjson.dumps(large_group(DEFAULT_MAX_BODY_BYTES // 800))
    assert OLD_LIMIT * 8 < len(body) <= DEFAULT_MAX_BODY_BYTES
    figures = {}
    for name, parse in (("parse_webhook", parse_webhook), ("orjson.loads", orjson.loads)):
        gc.collect()
        tracemalloc.start()
        parsed = parse(body)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        del parsed
        figures[name] = peak / len(body)
        print(
            f"\n[large groups] {name} of {len(body) / 2**20:.1f} MiB: peak "
            f"{peak / 2**20:.0f} MiB above the body ({peak / len(body):.1f}x)"
        )
    assert figures["parse_webhook"] < 3, figures


def _memory_limit_bytes() -> int:
    (container,) = read_manifests().get("Deployment", "alert-router")["spec"]["template"]["spec"][
        "containers"
    ]
    limit: str = container["resources"]["limits"]["memory"]
    units = {"Mi": 2**20, "Gi": 2**30}
    return int(limit[:-2]) * units[limit[-2:]]


def _rss(pid: int) -> dict[str, int]:
    """Resident and peak resident memory of a process, in bytes (Linux /proc)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_serve_takes_a_webhook_at_the_limit_in_half_the_pods_memory(tmp_path: Path) -> None:
    """`serve` as deployed, one webhook just under the default limit: its peak RSS leaves
    room in the Deployment's memory limit for a second one."""
    count = DEFAULT_MAX_BODY_BYTES // 800
    body = orjson.dumps(large_group(count))
    assert len(body) <= DEFAULT_MAX_BODY_BYTES
    settings = make_settings(tmp_path, Path("rules/routes.yaml").resolve())
    router = ServerProcess(settings, "--dry-run").wait_ready()
    try:
        pid = router.proc.pid
        # Peak RSS counts from here ("5" resets VmHWM to the current RSS).
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        before = _rss(pid)["VmRSS"]
        r = httpx.post(f"{router.url}/alerts", content=body, headers=JSON, timeout=120)
        assert r.status_code == 200, r.text[:300]
        assert r.json() == {"accepted": count, "duplicates": 0, "rejected": []}
        peak = _rss(pid)["VmHWM"]
    finally:
        router.stop()
    limit = _memory_limit_bytes()
    print(
        f"\n[large groups] serve, one webhook of {len(body) / 2**20:.1f} MiB: RSS "
        f"{before / 2**20:.0f} MiB before, peak {peak / 2**20:.0f} MiB "
        f"(+{(peak - before) / len(body):.1f}x the body); the pod's limit: {limit / 2**20:.0f} MiB"
    )
    assert peak < limit / 2
