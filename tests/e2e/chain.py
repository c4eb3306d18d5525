"""The real chain on loopback, for the end-to-end tests.

exporter (values the test sets) -> Prometheus (Debian's, evaluating the shipped
rules/prometheus/cost-alerts.yaml with `for:` shortened) -> Alertmanager (Debian's, one or
an HA pair that does not gossip) -> alert-router (`python -m receiver serve`, real notifiers)
-> the local Slack (incoming webhook and Web API) and PagerDuty servers.

Shared for the whole session: the exporter and Prometheus (Prometheus needs ~5s to apply
its scrape targets), and two loopback ports that Prometheus sends alerts to. Each test
starts its own router and Alertmanagers on those ports, so no state crosses tests; a test
ends by clearing the exporter and waiting until Prometheus has no alert firing, so the next
test's Alertmanager never hears of this test's alerts as firing.

Fixtures: `chain_prometheus` (session) and `chain` (per test, a `Chain`).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.alertmanager import AlertmanagerFactory, AlertmanagerServer
from tests.fakes.pagerduty import ROUTING_KEY, FakePagerDuty
from tests.fakes.prometheus import Exporter, PrometheusServer
from tests.fakes.slack import BOT_TOKEN, DEFAULT_CHANNEL, SlackApiServer, SlackWebhookServer
from tests.service import TOKEN, ServerProcess, make_settings
from tests.support import free_port, require_binary, wait_until

REPO = Path(__file__).resolve().parents[2]
SHIPPED_ROUTES = REPO / "rules" / "routes.yaml"
SHIPPED_ALERT_RULES = REPO / "rules" / "prometheus" / "cost-alerts.yaml"
# Slack bot destination added to the shipped rules, so that resolve edits can be checked.
BOT = "finops-bot"
SLACK = "finops-slack"
ONCALL = "oncall"
DESTINATIONS = (SLACK, ONCALL, BOT)


# -- Prometheus evaluating the shipped alert rules -------------------------------------------


def shortened_alert_rules(source: Path, target: Path, *, for_: str = "1s") -> Path:
    """A copy of the shipped Prometheus rules with every `for:` and group `interval:`
    shortened, so an alert fires within seconds of the exporter's values crossing."""
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    for group in data["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = for_
    target.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return target


class RulesPrometheus(PrometheusServer):
    """PrometheusServer that evaluates rule files every second and sends its alerts to
    Alertmanagers on fixed loopback ports, re-sending active alerts every second
    (`--rules.alert.resend-delay=1s`: an Alertmanager started mid-run hears of every
    firing alert at once, as one that has been up all along would)."""

    flags = ("--rules.alert.resend-delay=1s", "--log.level=error")
    scrape_timeout = 20.0

    def __init__(
        self,
        binary: str,
        workdir: Path,
        targets: Sequence[str],
        rule_files: Sequence[Path],
        alertmanagers: Sequence[str],
    ) -> None:
        super().__init__(binary, workdir, targets, rule_files)
        config = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        config["alerting"] = {
            "alertmanagers": [
                {"static_configs": [{"targets": list(alertmanagers)}], "timeout": "2s"}
            ]
        }
        self.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")

    def firing(self) -> list[dict[str, str]]:
        """Labels of the alerts Prometheus has pending or firing."""
        return [item["metric"] for item in self.query("ALERTS")]


@dataclass
class ChainPrometheus:
    """The session's exporter and Prometheus, and the ports its Alertmanagers listen on."""

    exporter: Exporter
    prometheus: RulesPrometheus
    alertmanager_ports: tuple[int, int]


@pytest.fixture(scope="session", name="chain_prometheus")
def chain_prometheus_fixture(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ChainPrometheus]:
    binary = require_binary("prometheus")
    workdir = tmp_path_factory.mktemp("chain-prometheus")
    rules = shortened_alert_rules(SHIPPED_ALERT_RULES, workdir / "cost-alerts.yaml")
    ports = (free_port(), free_port())
    exporter = Exporter()
    server = RulesPrometheus(
        binary,
        workdir / "prometheus",
        [exporter.target],
        [rules],
        [f"127.0.0.1:{port}" for port in ports],
    )
    try:
        server.start()
        yield ChainPrometheus(exporter, server, ports)
    finally:
        server.close()
        exporter.close()


# -- the platform's metrics --------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    metric: str
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Platform:
    """Names of one test's services, GPU nodes and queue (unique per test via `tag`)."""

    tag: str

    @property
    def stt(self) -> str:
        return f"whisper-stt-{self.tag}"

    @property
    def lipsync(self) -> str:
        return f"wav2lip-{self.tag}"

    @property
    def node2(self) -> str:
        return f"gpu-node-2-{self.tag}"

    @property
    def node3(self) -> str:
        return f"gpu-node-3-{self.tag}"

    @property
    def queue(self) -> str:
        return f"transcribe-{self.tag}"

    def services(
        self,
        *,
        stt_budget: float = 45.0,
        stt_cost: float = 20.5,
        stt_per_job: float = 0.21,
        lipsync_budget: float = 40.0,
        lipsync_cost: float = 30.0,
        lipsync_per_job: float = 0.31,
    ) -> list[Series]:
        """The cost exporter's service metrics (defaults: no alert fires)."""
        ns = {"namespace": "ai-models"}
        stt = {"service": self.stt, **ns}
        lip = {"service": self.lipsync, **ns}
        return [
            Series("budget_utilization_percentage", stt, stt_budget),
            Series("budget_utilization_percentage", lip, lipsync_budget),
            Series("service_cost_per_hour", stt, stt_cost),
            Series("service_cost_per_hour", lip, lipsync_cost),
            Series("monthly_cost_projection", stt, stt_cost * 720),
            Series("monthly_cost_projection", lip, lipsync_cost * 720),
            Series("cost_per_job", {"service": self.stt, "queue_name": self.queue}, stt_per_job),
            Series(
                "cost_per_job",
                {"service": self.lipsync, "queue_name": f"lipsync-{self.tag}"},
                lipsync_per_job,
            ),
            Series("redis_queue_depth", {"queue_name": self.queue, "queue_type": "pending"}, 42),
        ]

    def gpus(self, *, node2_util: float = 85.0, node3_util: float = 90.0) -> list[Series]:
        """The DCGM exporter's utilization and the cost exporter's node cost (defaults:
        busy GPUs, no alert). Each node has one GPU, held by a pod."""
        ns = "ai-models"
        return [
            Series(
                "DCGM_FI_DEV_GPU_UTIL",
                {"Hostname": self.node2, "gpu": "0", "pod": f"lipsync-{self.tag}", "namespace": ns},
                node2_util,
            ),
            Series(
                "DCGM_FI_DEV_GPU_UTIL",
                {"Hostname": self.node3, "gpu": "1", "pod": f"stt-{self.tag}", "namespace": ns},
                node3_util,
            ),
            Series(
                "gpu_cost_per_hour",
                {"node": self.node2, "instance_type": "g5.xlarge", "gpu_type": "A10G"},
                1.2,
            ),
            Series(
                "gpu_cost_per_hour",
                {"node": self.node3, "instance_type": "g5.2xlarge", "gpu_type": "A10G"},
                4.1,
            ),
        ]


# -- what the destinations received ------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One alert in one accepted message (or PagerDuty event) at one destination."""

    destination: str
    status: str  # firing | resolved
    alertname: str
    text: str  # the message (or its digest line) as Slack shows it, or the PD summary
    at: float  # time.monotonic() when the local server received it
    request: int  # index of the accepted request at that destination
    body: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def has(self, marker: str) -> bool:
        return marker in self.text


_DIGEST_LINE = re.compile(r"\*(FIRING|RESOLVED)\* (\S+) ")
_SINGLE = re.compile(r"^\[(FIRING|RESOLVED)\] ([^:\s]+)")


def slack_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from slack_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from slack_strings(item)


def _slack_message(
    destination: str, body: Mapping[str, Any], at: float, request: int
) -> list[Delivery]:
    """The alerts one Slack message is about: one, or each line of a digest."""
    text = str(body.get("text") or "")
    if text.startswith("[DIGEST]"):
        found = []
        for attachment in body.get("attachments") or []:
            for block in attachment.get("blocks") or []:
                section = (block.get("text") or {}).get("text") or ""
                for line in section.split("\n"):
                    match = _DIGEST_LINE.search(line)
                    if match:
                        status, name = match.groups()
                        found.append(
                            Delivery(destination, status.lower(), name, line, at, request, body)
                        )
        return found
    match = _SINGLE.match(text)
    if match is None:
        return []
    status, name = match.groups()
    whole = "\n".join(slack_strings(body))
    return [Delivery(destination, status.lower(), name, whole, at, request, body)]


def cost_fields(body: Mapping[str, Any]) -> dict[str, str]:
    """A single Slack message's cost-context fields: title -> value as shown."""
    fields: dict[str, str] = {}
    for attachment in body.get("attachments") or []:
        for block in attachment.get("blocks") or []:
            for item in block.get("fields") or []:
                title, _, value = str(item.get("text", "")).partition("\n")
                fields[title.strip("*")] = value
    return fields


def unavailable_note(body: Mapping[str, Any]) -> str:
    """The "cost context unavailable: ..." line of a Slack message, or ''."""
    return next((s for s in slack_strings(body) if s.startswith("cost context unavailable")), "")


@dataclass
class Deliveries:
    """Everything the three local servers accepted, as Delivery records."""

    items: list[Delivery]
    pd_events: list[dict[str, Any]]
    bot_edits: list[dict[str, Any]]

    def to(self, destination: str, status: str | None = None) -> list[Delivery]:
        return [
            d
            for d in self.items
            if d.destination == destination and (status is None or d.status == status)
        ]

    def count(self, destination: str, status: str, alertname: str, marker: str) -> int:
        return sum(
            1 for d in self.to(destination, status) if d.alertname == alertname and d.has(marker)
        )

    def find(self, destination: str, status: str, alertname: str, marker: str) -> list[Delivery]:
        return [
            d for d in self.to(destination, status) if d.alertname == alertname and d.has(marker)
        ]


def collect(
    slack_webhook: SlackWebhookServer, slack_api: SlackApiServer, pagerduty: FakePagerDuty
) -> Deliveries:
    items: list[Delivery] = []
    for index, request in enumerate(slack_webhook.delivered):
        if isinstance(request.body, Mapping):
            items.extend(_slack_message(SLACK, request.body, request.at, index))
    edits: list[dict[str, Any]] = []
    accepted = [
        r
        for r in slack_api.requests
        if r.status == 200 and isinstance(r.answer, Mapping) and r.answer.get("ok") is True
    ]
    for index, request in enumerate(accepted):
        body = request.body
        if not isinstance(body, Mapping):
            continue
        if request.method == "chat.update":
            edits.append(dict(body))
        elif request.method == "chat.postMessage":
            items.extend(_slack_message(BOT, body, request.at, index))
    events: list[dict[str, Any]] = []
    triggers: dict[str, tuple[str, str]] = {}
    accepted_pd = [
        r
        for r in list(pagerduty.requests)
        if r.status == 202 and isinstance(r.json, dict) and r.path.endswith("/enqueue")
    ]
    for index, pd_request in enumerate(accepted_pd):
        event = pd_request.json
        events.append(event)
        key = str(event.get("dedup_key"))
        if event.get("event_action") == "trigger":
            payload = event.get("payload") or {}
            name = str(payload.get("class") or "")
            summary = str(payload.get("summary") or "")
            triggers.setdefault(key, (name, summary))
            items.append(
                Delivery(ONCALL, "firing", name, summary, pd_request.received_at, index, event)
            )
        elif event.get("event_action") == "resolve":
            name, summary = triggers.get(key, ("", ""))
            items.append(
                Delivery(ONCALL, "resolved", name, summary, pd_request.received_at, index, event)
            )
    return Deliveries(items, events, edits)


def print_figures(title: str, figures: Mapping[str, object]) -> None:
    """One line of figures, shown with `pytest -s`."""
    print(f"\n[e2e] {title}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


# -- the router's rules --------------------------------------------------------------------------


def e2e_rules(
    prometheus_url: str,
    *,
    slack_per_second: float | None = None,
    pagerduty_per_minute: float | None = None,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The shipped rules/routes.yaml (context, routes, default), pointed at the test's
    Prometheus (context cached 1s), plus a Slack bot destination that gets a copy of
    every `team="finops"` alert (a resolve edits its message). The rates, when given,
    replace Slack's 1/s and PagerDuty's 120/min so a storm drains in seconds (rate limits
    have their own tests)."""
    rules: dict[str, Any] = yaml.safe_load(SHIPPED_ROUTES.read_text(encoding="utf-8"))
    rules["prometheus"]["url"] = prometheus_url
    # Shortened like the alert rules' `for:`: a value cached for the shipped 30s would
    # still show the utilization from before the GPU went idle a few seconds ago.
    rules["prometheus"]["cache_ttl"] = "1s"
    rules["destinations"][BOT] = {
        "slack": {"token": {"secret": "slack-bot-token"}, "channel": DEFAULT_CHANNEL}
    }
    rules["routes"].insert(
        0,
        {"name": BOT, "matchers": ['team="finops"'], "to": [BOT], "continue": True},
    )
    if slack_per_second is not None:
        for name in (SLACK, BOT):
            rules["destinations"][name]["slack"]["max_per_second"] = slack_per_second
    if pagerduty_per_minute is not None:
        rules["destinations"][ONCALL]["pagerduty"]["max_per_minute"] = pagerduty_per_minute
    if edit is not None:
        edit(rules)
    return rules


def write_rules(path: Path, rules: Mapping[str, Any] | str) -> Path:
    """Replace the rules file in one step (write aside, rename), as a ConfigMap update does."""
    text = rules if isinstance(rules, str) else yaml.safe_dump(dict(rules), sort_keys=False)
    aside = path.with_name(path.name + ".new")
    aside.write_text(text, encoding="utf-8")
    aside.replace(path)
    return path


# -- the chain ---------------------------------------------------------------------------------


def router_metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The router's /metrics as {(sample name, sorted labels): value}."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def metric(
    samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float],
    name: str,
    **labels: str,
) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    )


@dataclass
class Chain:
    """One test's chain: its router, Alertmanagers and local vendor servers, on top of
    the session's exporter and Prometheus."""

    shared: ChainPrometheus
    workdir: Path
    slack_webhook: SlackWebhookServer
    slack_api: SlackApiServer
    pagerduty: FakePagerDuty
    start_alertmanager: AlertmanagerFactory
    tag: str
    router: ServerProcess | None = None
    routers: list[ServerProcess] = field(default_factory=list)
    alertmanagers: list[AlertmanagerServer] = field(default_factory=list)
    rules_path: Path | None = None

    @property
    def exporter(self) -> Exporter:
        return self.shared.exporter

    @property
    def prometheus(self) -> RulesPrometheus:
        return self.shared.prometheus

    @property
    def platform(self) -> Platform:
        return Platform(self.tag)

    # the router

    def write_rules(self, **options: Any) -> Path:
        self.rules_path = write_rules(
            self.workdir / "routes.yaml", e2e_rules(self.prometheus.url, **options)
        )
        return self.rules_path

    def start_router(self, *, env: Mapping[str, str] | None = None, **rules: Any) -> ServerProcess:
        """alert-router as a subprocess with real notifiers pointed at the local servers."""
        if self.rules_path is None or rules:
            self.write_rules(**rules)
        assert self.rules_path is not None
        settings = make_settings(
            self.workdir,
            self.rules_path,
            prometheus_url=self.prometheus.url,
            slack_api_url=self.slack_api.api_url,
            pagerduty_events_url=self.pagerduty.url,
        )
        if self.router is not None:  # a restart: same port, same state
            settings = self.router.settings
        secrets = settings.secrets_dir
        (secrets / "slack-webhook-url").write_text(self.slack_webhook.url)
        (secrets / "pagerduty-key").write_text(ROUTING_KEY)
        (secrets / "slack-bot-token").write_text(BOT_TOKEN)
        router = ServerProcess(settings, env=dict(env or {}))
        self.routers.append(router)
        self.router = router
        router.wait_ready(timeout=30)
        return router

    @property
    def webhook_url(self) -> str:
        assert self.router is not None
        return f"{self.router.url}/alerts"

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        assert self.router is not None
        return router_metrics(self.router.url)

    # Alertmanagers

    def start_alertmanagers(self, count: int = 1, **options: Any) -> list[AlertmanagerServer]:
        """`count` Alertmanagers (2: an HA pair without gossip) on the ports Prometheus
        sends to, each with its own copy of the webhook config."""
        assert count <= len(self.shared.alertmanager_ports)
        started = [
            self.start_alertmanager(self.webhook_url, TOKEN, port=port, **options)
            for port in self.shared.alertmanager_ports[:count]
        ]
        self.alertmanagers.extend(started)
        return started

    # the exporter

    def set(self, series: Iterable[Series]) -> None:
        for item in series:
            self.exporter.set(item.metric, item.labels, item.value)

    # what arrived

    def deliveries(self) -> Deliveries:
        return collect(self.slack_webhook, self.slack_api, self.pagerduty)

    def wait_for(
        self, check: Callable[[Deliveries], bool], timeout: float = 30.0, what: str = ""
    ) -> Deliveries:
        """Poll the local servers until `check` holds; fail with what did arrive."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.deliveries()
            if check(found):
                return found
            if time.monotonic() > deadline:
                summary = Counter((d.destination, d.status, d.alertname) for d in found.items)
                pytest.fail(
                    f"not delivered within {timeout}s: {what or check}\n"
                    f"delivered: {json.dumps(sorted(map(list, summary.items())), default=str)}\n"
                    f"router log tail:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def log_tail(self, lines: int = 25) -> str:
        if self.router is None:
            return ""
        return "\n".join(self.router.lines[-lines:])

    # teardown

    def close(self) -> None:
        for router in self.routers:
            router.stop()  # a router the test killed is only reaped
        for alertmanager in self.alertmanagers:
            alertmanager.close()
        # No alert of this test may still fire when the next test's Alertmanager starts.
        self.exporter.clear()
        if self.prometheus.running:
            wait_until(lambda: not self.prometheus.firing(), timeout=20)


@pytest.fixture(name="chain")
def chain_fixture(
    chain_prometheus: ChainPrometheus,
    tmp_path: Path,
    slack_webhook: SlackWebhookServer,
    slack_api: SlackApiServer,
    fake_pagerduty: FakePagerDuty,
    alertmanager_factory: AlertmanagerFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Chain]:
    prometheus = chain_prometheus.prometheus
    if not prometheus.running:  # a test stopped it and could not restart it
        prometheus.start()
    chain_prometheus.exporter.clear()
    wait_until(lambda: not prometheus.firing(), timeout=20)
    tag = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower().removeprefix("test_"))[:24]
    chain = Chain(
        shared=chain_prometheus,
        workdir=tmp_path,
        slack_webhook=slack_webhook,
        slack_api=slack_api,
        pagerduty=fake_pagerduty,
        start_alertmanager=alertmanager_factory,
        tag=tag.strip("-"),
    )
    try:
        yield chain
    finally:
        chain.close()
