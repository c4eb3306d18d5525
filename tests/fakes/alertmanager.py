"""A real Alertmanager (Debian's `prometheus-alertmanager`) for tests, sending to alert-router.

Each instance runs on a free loopback port with its own storage directory and gossip off
(`--cluster.listen-address=`), so two of them form an HA pair that does not gossip: each
sends its own copy of every notification, as a pair whose peers cannot see each other does.
The generated config has one webhook receiver pointing at the router, with the bearer token
in a `credentials_file`, `send_resolved: true` and `max_alerts: 0`, and short
group_wait / group_interval / repeat_interval so a test sees groups flush and repeat.

Fixtures:
- `alertmanager_factory`: `start(webhook_url, token, **options)` -> a running
  AlertmanagerServer, stopped after the test. Options: `group_by`, `group_wait`,
  `group_interval`, `repeat_interval`, `port` (reuse a port, e.g. one Prometheus sends to).

Helpers on AlertmanagerServer: `post_alerts` (as Prometheus does, `POST /api/v2/alerts`),
`alerts()` and `silences()` (`GET /api/v2/...`), `add_silence`, `notifications()` (what its
webhook integration sent, from its own metrics). `am_alert(...)` builds one posted alert.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support import free_port, require_binary, terminate

BINARY = "prometheus-alertmanager"  # the Debian package's name for the alertmanager binary
RECEIVER = "alert-router"


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def am_alert(
    labels: Mapping[str, str],
    annotations: Mapping[str, str] | None = None,
    *,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    generator_url: str = "http://prometheus.test/graph",
) -> dict[str, Any]:
    """One alert as Prometheus posts it to `/api/v2/alerts` (postableAlert)."""
    alert: dict[str, Any] = {
        "labels": dict(labels),
        "annotations": dict(annotations or {}),
        "generatorURL": generator_url,
    }
    if starts_at is not None:
        alert["startsAt"] = rfc3339(starts_at)
    if ends_at is not None:
        alert["endsAt"] = rfc3339(ends_at)
    return alert


def alertmanager_config(
    webhook_url: str,
    credentials_file: Path,
    *,
    group_by: Sequence[str] = ("alertname",),
    group_wait: str = "1s",
    group_interval: str = "2s",
    repeat_interval: str = "1h",
) -> dict[str, Any]:
    """alertmanager.yml: every alert to one webhook receiver, alert-router."""
    return {
        "route": {
            "receiver": RECEIVER,
            "group_by": list(group_by),
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        },
        "receivers": [
            {
                "name": RECEIVER,
                "webhook_configs": [
                    {
                        "url": webhook_url,
                        "send_resolved": True,
                        # 0: every alert of the group in one webhook, as the router expects.
                        "max_alerts": 0,
                        "http_config": {
                            "authorization": {
                                "type": "Bearer",
                                "credentials_file": str(credentials_file),
                            }
                        },
                    }
                ],
            }
        ],
    }


class AlertmanagerServer:
    """Debian's Alertmanager as a subprocess on a loopback port with its own storage."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        webhook_url: str,
        token: str,
        *,
        port: int | None = None,
        group_by: Sequence[str] = ("alertname",),
        group_wait: str = "1s",
        group_interval: str = "2s",
        repeat_interval: str = "1h",
    ) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.webhook_url = webhook_url
        self.storage = workdir / "data"
        self.log_path = workdir / "alertmanager.log"
        self.config_path = workdir / "alertmanager.yml"
        self.token_path = workdir / "webhook-token"
        workdir.mkdir(parents=True, exist_ok=True)
        self.token_path.write_text(token, encoding="utf-8")
        self.token_path.chmod(0o600)
        config = alertmanager_config(
            webhook_url,
            self.token_path,
            group_by=group_by,
            group_wait=group_wait,
            group_interval=group_interval,
            repeat_interval=repeat_interval,
        )
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        self._process: subprocess.Popen[bytes] | None = None
        self._client = httpx.Client(timeout=10.0)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 20.0) -> AlertmanagerServer:
        assert not self.running, "Alertmanager is already running"
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.config_path}",
                    f"--storage.path={self.storage}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    f"--web.external-url={self.url}",
                    # Gossip off: no peer, no cluster port (an HA pair that cannot see itself).
                    "--cluster.listen-address=",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while not self._ready():
            if not self.running or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"Alertmanager did not become ready on {self.url}:\n{self.log_tail()}")
            time.sleep(0.05)
        return self

    def _ready(self) -> bool:
        try:
            return self._client.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        """Terminate (Alertmanager saves its state on SIGTERM), then kill if it hangs."""
        process, self._process = self._process, None
        if process is None:
            return
        terminate(process)

    def close(self) -> None:
        self.stop()
        self._client.close()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # -- the API ---------------------------------------------------------------------

    def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """`POST /api/v2/alerts`, as Prometheus sends them; fails the test unless 200."""
        response = self._client.post(f"{self.url}/api/v2/alerts", json=list(alerts))
        assert response.status_code == 200, f"{response.status_code} {response.text}"

    def resolve(self, alerts: Sequence[Mapping[str, Any]], at: datetime | None = None) -> None:
        """Post `alerts` again with endsAt now (or `at`): how Prometheus resolves them."""
        ends = rfc3339(at or datetime.now(UTC))
        self.post_alerts([{**alert, "endsAt": ends} for alert in alerts])

    def alerts(
        self, *, active: bool = True, silenced: bool = True, inhibited: bool = True
    ) -> list[dict[str, Any]]:
        """`GET /api/v2/alerts`: the alerts Alertmanager holds (firing unless resolved)."""
        response = self._client.get(
            f"{self.url}/api/v2/alerts",
            params={
                "active": str(active).lower(),
                "silenced": str(silenced).lower(),
                "inhibited": str(inhibited).lower(),
            },
        )
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    def silences(self) -> list[dict[str, Any]]:
        """`GET /api/v2/silences`."""
        response = self._client.get(f"{self.url}/api/v2/silences")
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    def add_silence(
        self,
        matchers: Mapping[str, str],
        *,
        duration: timedelta = timedelta(hours=1),
        comment: str = "test",
    ) -> str:
        """`POST /api/v2/silences` with equality matchers; returns the silence ID."""
        now = datetime.now(UTC)
        body = {
            "matchers": [
                {"name": k, "value": v, "isRegex": False, "isEqual": True}
                for k, v in matchers.items()
            ],
            "startsAt": rfc3339(now),
            "endsAt": rfc3339(now + duration),
            "createdBy": "tests",
            "comment": comment,
        }
        response = self._client.post(f"{self.url}/api/v2/silences", json=body)
        response.raise_for_status()
        return str(response.json()["silenceID"])

    def notifications(self) -> dict[str, float]:
        """What the webhook integration did, from Alertmanager's own metrics: `sent` and
        `failed` notifications (a notification is retried until it succeeds or its flush
        times out), and the HTTP `requests` and `requests_failed` behind them."""
        metrics = {
            "alertmanager_notifications_total": "sent",
            "alertmanager_notifications_failed_total": "failed",
            "alertmanager_notification_requests_total": "requests",
            "alertmanager_notification_requests_failed_total": "requests_failed",
        }
        found = dict.fromkeys(metrics.values(), 0.0)
        text = self._client.get(f"{self.url}/metrics").text
        for line in text.splitlines():
            name, _, rest = line.partition("{")
            if name in metrics and 'integration="webhook"' in rest:
                found[metrics[name]] += float(line.rsplit(" ", 1)[1])
        return found


AlertmanagerFactory = Callable[..., AlertmanagerServer]


@pytest.fixture(name="alertmanager_factory")
def alertmanager_factory_fixture(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AlertmanagerFactory]:
    """`start(webhook_url, token, **options)` -> a running AlertmanagerServer.

    Every Alertmanager started is stopped after the test.
    """
    binary = require_binary(BINARY)
    started: list[AlertmanagerServer] = []

    def start(webhook_url: str, token: str, **options: Any) -> AlertmanagerServer:
        server = AlertmanagerServer(
            binary, tmp_path_factory.mktemp("alertmanager"), webhook_url, token, **options
        )
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.close()
