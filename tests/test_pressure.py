"""Under a flood of webhooks the answers come first, and the pipeline still drains."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from receiver.samples import webhook
from tests.service import TOKEN, make_settings, start_service
from tests.support import wait_until

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_deliveries_go_on_while_webhooks_flood_in(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, Path("rules/routes.yaml"))
    server, sent = start_service(settings)
    stop = threading.Event()
    answers: list[int] = []
    threads: list[threading.Thread] = []
    try:
        unique = [
            ({"alertname": "IdleGPU", "Hostname": f"gpu-node-{i}", "gpu": "0"}, {"summary": "idle"})
            for i in range(300)
        ]
        for start in range(0, len(unique), 100):
            r = httpx.post(
                f"{server.url}/alerts", json=webhook(unique[start : start + 100]), headers=AUTH
            )
            assert r.status_code == 200, r.text
        # Then a flood: copies of one alert from many connections at once, without pause.
        copy = webhook([({"alertname": "IdleGPU", "Hostname": "flood"}, {"summary": "s"})])

        def flood() -> None:
            with httpx.Client(headers=AUTH, timeout=30) as client:
                while not stop.is_set():
                    answers.append(client.post(f"{server.url}/alerts", json=copy).status_code)

        threads += [threading.Thread(target=flood) for _ in range(12)]
        for thread in threads:
            thread.start()
        most_in_flight = 0

        def delivered_during_flood() -> bool:
            nonlocal most_in_flight
            most_in_flight = max(most_in_flight, server.service.webhooks_in_flight)
            return len({n.alert.fingerprint for _, n, _ in sent.items}) >= 301

        # Every alert is delivered while the flood goes on: the pipeline steps aside for
        # answers, but never stops.
        wait_until(delivered_during_flood, timeout=60, interval=0.01)
        assert not stop.is_set()
        assert most_in_flight >= server.service.tuning.queued_webhooks  # it was a flood
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        server.stop()
    assert answers and set(answers) == {200}
