"""The command line, run as users run it: `python -m receiver ...` in a child process."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml
from PIL import Image

from receiver.cli.report import parse_at
from receiver.samples import webhook
from tests.fakes.prometheus import PrometheusServer, Sample, start_backfilled
from tests.fakes.slack import BOT_TOKEN, DEFAULT_CHANNEL, SlackApiServer, SlackWebhookServer
from tests.service import TOKEN, ServerProcess, make_settings
from tests.support import HangingServer, free_port, wait_until

SECRET_ENV = {
    "SLACK_WEBHOOK_URL": "https://hooks.slack.invalid/services/T0/B0/secretpart",
    "PAGERDUTY_KEY": "0123456789abcdef0123456789abcdef",
    "WEBHOOK_TOKEN": TOKEN,
}


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ALERT_ROUTER_", "SLACK_", "PAGERDUTY_", "WEBHOOK_"))
    }
    base["ALERT_ROUTER_SECRETS_DIR"] = "/nonexistent-secrets-dir"
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "receiver", *args],
        env=base,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_check_valid_rules_with_secrets() -> None:
    result = run("check", "--config", "rules/routes.yaml", env=SECRET_ENV)
    assert result.returncode == 0, result.stderr
    assert "rules valid" in result.stdout
    assert "finops-slack: slack webhook; secret slack-webhook-url (found)" in result.stdout
    assert "oncall: pagerduty; secret pagerduty-key (found)" in result.stdout
    assert result.stdout.rstrip().endswith("OK")
    # Secrets never reach check's output.
    for value in SECRET_ENV.values():
        assert value not in result.stdout + result.stderr


def test_check_names_a_missing_secret() -> None:
    env = {k: v for k, v in SECRET_ENV.items() if k != "PAGERDUTY_KEY"}
    result = run("check", "--config", "rules/routes.yaml", env=env)
    assert result.returncode == 1
    assert "secret 'pagerduty-key' (needed by oncall) is missing" in result.stderr
    assert "PAGERDUTY_KEY" in result.stderr


def test_check_invalid_rules_names_file_line_and_fix() -> None:
    bad = Path("tests/config/testdata/undefined_destination.yaml")
    result = run("check", "--config", str(bad), env=SECRET_ENV)
    assert result.returncode == 1
    assert (
        f"{bad}:5: routes[0].to[0]: destination 'pager' is not defined: "
        "add it under destinations or use one of: s"
    ) in result.stderr


def test_check_reads_secret_files(tmp_path: Path) -> None:
    (tmp_path / "slack-webhook-url").write_text("https://hooks.slack.invalid/x\n")
    (tmp_path / "pagerduty-key").write_text("k" * 32)
    (tmp_path / "webhook-token").write_text("t")
    result = run(
        "check",
        "--config",
        "rules/routes.yaml",
        env={"ALERT_ROUTER_SECRETS_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr


BOT_RULES = """
destinations:
  bot: {slack: {token: {secret: slack-bot-token}, channel: "#gpu-costs"}}
  pd: {pagerduty: {routing_key: {secret: pagerduty-key}}}
routes:
  - name: all
    to: [bot, pd]
"""


def test_check_warns_when_buttons_cannot_be_verified(tmp_path: Path) -> None:
    config = tmp_path / "routes.yaml"
    config.write_text(BOT_RULES)
    env = {**SECRET_ENV, "SLACK_BOT_TOKEN": "xoxb-bot-token-value"}
    result = run("check", "--config", str(config), env=env)
    # Valid (the rules can serve), but every press of bot's buttons would be refused.
    assert result.returncode == 0, result.stderr
    assert "warning: secret 'slack-signing-secret' is missing" in result.stderr
    assert "buttons on bot's messages" in result.stderr
    assert "buttons: false" in result.stderr

    signed = run("check", "--config", str(config), env={**env, "SLACK_SIGNING_SECRET": "s" * 32})
    assert signed.returncode == 0, signed.stderr
    assert "warning" not in signed.stderr
    assert "s" * 32 not in signed.stdout + signed.stderr

    config.write_text(
        BOT_RULES.replace('channel: "#gpu-costs"', 'channel: "#gpu-costs", buttons: false')
    )
    off = run("check", "--config", str(config), env=env)
    assert off.returncode == 0, off.stderr
    assert "warning" not in off.stderr


ROUTE_CASES = [
    # Critical budget alert: paged and posted.
    (["alertname=BudgetThresholdExceeded", "severity=critical"], [], "oncall, finops-slack"),
    (["alertname=BudgetThresholdExceeded", "severity=warning"], [], "finops-slack"),
    # Money decides: over $100/h the cost alert also pages.
    (["alertname=HighGPUCost", "service=x"], ["cost_per_hour=120"], "oncall, finops-slack"),
    (["alertname=HighGPUCost", "service=x"], ["cost_per_hour=80"], "finops-slack"),
    (["alertname=IdleGPU"], [], "finops-slack"),
    (["alertname=SomethingElse"], [], "finops-slack"),
]


@pytest.mark.parametrize(("labels", "context", "expected"), ROUTE_CASES)
def test_route(labels: list[str], context: list[str], expected: str) -> None:
    args = ["route", "--config", "rules/routes.yaml", *labels]
    for item in context:
        args += ["--context", item]
    result = run(*args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == expected


def test_route_explains_an_unmet_money_condition() -> None:
    result = run("route", "--config", "rules/routes.yaml", "alertname=HighGPUCost")
    assert "route expensive-page matches the labels but not cost_per_hour > 100 (no value" in (
        result.stdout
    )


def test_route_rejects_unknown_context() -> None:
    result = run("route", "alertname=X", "--context", "nonsense=1")
    assert result.returncode == 2
    assert "unknown context value 'nonsense'" in result.stdout


def test_serve_refuses_without_webhook_token(tmp_path: Path) -> None:
    env = {k: v for k, v in SECRET_ENV.items() if k != "WEBHOOK_TOKEN"}
    result = run("serve", "--config", "rules/routes.yaml", env=env, timeout=30)
    assert result.returncode == 2
    assert "refusing to start: secret 'webhook-token' is missing" in result.stderr
    assert "--no-auth" in result.stderr


def test_serve_refuses_without_destination_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in SECRET_ENV.items() if k != "SLACK_WEBHOOK_URL"}
    result = run("serve", "--config", "rules/routes.yaml", env=env, timeout=30)
    assert result.returncode == 2
    assert "secret 'slack-webhook-url' (needed by finops-slack) is missing" in result.stderr


def test_serve_refuses_invalid_rules() -> None:
    result = run("serve", "--config", "tests/config/testdata/bad_regex.yaml", env=SECRET_ENV)
    assert result.returncode == 2
    assert "has an invalid regex" in result.stderr


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    settings = make_settings(tmp_path, Path("rules/routes.yaml"))
    proc = ServerProcess(settings, "--dry-run").wait_ready()
    yield proc
    proc.stop()


def test_send_labels_to_a_running_router(server: ServerProcess) -> None:
    result = run(
        "send",
        "alertname=HighGPUCost",
        "service=wav2lip",
        "--annotation",
        "summary=costly",
        "--url",
        f"{server.url}/alerts",
        "--token",
        TOKEN,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('200 {"accepted":1,"duplicates":0,"rejected":[]}')


def test_send_a_file_uses_the_token_secret(server: ServerProcess) -> None:
    result = run(
        "send",
        "tests/data/alertmanager-webhook-v4-group.json",
        "--url",
        f"{server.url}/alerts",
        env={"WEBHOOK_TOKEN": TOKEN},
    )
    assert result.returncode == 0, result.stderr
    assert '"accepted":3' in result.stdout


def test_send_with_wrong_token_fails(server: ServerProcess) -> None:
    result = run("send", "alertname=X", "--url", f"{server.url}/alerts", "--token", "nope")
    assert result.returncode == 1
    assert result.stdout.startswith("401")


def test_send_to_nothing_says_so() -> None:
    result = run("send", "alertname=X", "--url", f"http://127.0.0.1:{free_port()}/alerts")
    assert result.returncode == 1
    assert "cannot reach" in result.stderr


def test_no_auth_warns_loudly(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, Path("rules/routes.yaml"))
    (settings.secrets_dir / "webhook-token").unlink()
    proc = ServerProcess(settings, "--dry-run", "--no-auth").wait_ready()
    try:
        r = httpx.post(f"{proc.url}/alerts", json={"version": "4", "alerts": []})
        assert r.status_code == 200
        assert any("AUTHENTICATION IS OFF" in e.get("message", "") for e in proc.logs())
    finally:
        proc.stop()


def test_dead_letters_list_when_empty(tmp_path: Path) -> None:
    result = run("dead-letters", "list", env={"ALERT_ROUTER_STATE": str(tmp_path / "s.db")})
    assert result.returncode == 0
    assert result.stdout.strip() == "no dead letters"


def test_dead_letters_retry_needs_ids(tmp_path: Path) -> None:
    result = run("dead-letters", "retry", env={"ALERT_ROUTER_STATE": str(tmp_path / "s.db")})
    assert result.returncode == 2


@pytest.mark.parametrize("mode", ["auto", "samples"])
def test_demo_runs_the_main_job(mode: str) -> None:
    env = {"ALERT_ROUTER_DEMO": "samples"} if mode == "samples" else {}
    result = run("demo", env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    if mode == "samples":
        assert "posting sample webhooks" in out
    if "the real chain on this machine" in out:
        # Prometheus and an Alertmanager HA pair: every alert arrives twice.
        assert "alerts answered as duplicates: 10 (of 20" in out
        # Then the shipped report, by the command a person would type, and its chart.
        assert "alert-router report daily-costs --dry-run --chart /" in out
        assert "\nCost report daily-costs: 24h to " in out
        assert "\nSpend\n  total $" in out
        [chart] = re.findall(r"chart \(PNG\): (\S+\.png)\n", out)
        try:
            with Image.open(chart) as image:
                assert image.size == (1200, 600)
        finally:
            Path(chart).unlink()
    else:
        assert "alerts answered as duplicates: 1\n" in out
    for name in (
        "BudgetThresholdExceeded",
        "HighGPUCost",
        "LowGPUUtilization",
        "HighCostPerJob",
        "IdleGPU",
    ):
        assert f"FIRING {name}" in out
        assert f"RESOLVED {name}" in out
    assert "--> oncall: FIRING BudgetThresholdExceeded [first_notification]" in out
    assert "--> oncall: RESOLVED BudgetThresholdExceeded [resolved]" in out
    assert "finops-slack: 10 notification(s) would have been sent" in out
    assert "oncall: 2 notification(s) would have been sent" in out
    # The run ends with the web page's address and the password made for it.
    assert re.search(r"web page: http://127\.0\.0\.1:\d+/ui/ +\(any user name, password \S+\)", out)


HANGING_RULES = """
destinations:
  hook: {slack: {webhook_url: {secret: slack-webhook-url}}}
routes:
  - name: all
    to: [hook]
"""


def _claims(state: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every inbox and outbox row, leases included, read without writing."""
    with contextlib.closing(sqlite3.connect(f"file:{state}?mode=ro", uri=True)) as conn:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()  # noqa: S608
            for table in ("inbox", "outbox")
        }


def test_dead_letters_list_changes_no_lease_of_a_running_router(tmp_path: Path) -> None:
    hanging = HangingServer()
    config = tmp_path / "routes.yaml"
    config.write_text(HANGING_RULES)
    settings = make_settings(tmp_path, config)
    # Slack takes the sends and never answers: the router holds them claimed.
    (settings.secrets_dir / "slack-webhook-url").write_text(f"{hanging.url}/services/x")
    proc = ServerProcess(settings).wait_ready()
    state = Path(settings.state)
    try:
        body = webhook([({"alertname": f"Held{i}"}, {"summary": "s"}) for i in range(5)])
        response = httpx.post(
            f"{proc.url}/alerts", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert response.status_code == 200, response.text

        def claimed() -> bool:
            now = time.time()
            return any(row[-1] > now for row in _leases(state))

        wait_until(claimed, timeout=15)
        # Frozen, so that only the command could change a row meanwhile.
        proc.proc.send_signal(signal.SIGSTOP)
        try:
            before = _claims(state)
            result = run("dead-letters", "list", env={"ALERT_ROUTER_STATE": str(state)})
            after = _claims(state)
        finally:
            proc.proc.send_signal(signal.SIGCONT)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "no dead letters"
        assert after == before
    finally:
        proc.stop()
        hanging.close()


def _leases(state: Path) -> list[tuple[str, float]]:
    with contextlib.closing(sqlite3.connect(f"file:{state}?mode=ro", uri=True)) as conn:
        return conn.execute("SELECT id, lease_until FROM outbox").fetchall()


# -- report ------------------------------------------------------------------------------


def _report_time() -> datetime:
    """08:00 UTC (09:00 in Berlin, in winter or summer alike: 08:00 or 10:00) on the 10th
    of last month: 224 h into its month, whole hours, inside the backfilled history."""
    first = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first - timedelta(days=1)).replace(day=10, hour=8)


REPORT_AT = _report_time()


def _report_history() -> list[Sample]:
    # From the first of the month to the report: a at $10/h, b at $4/h throughout.
    start = REPORT_AT.replace(day=1, hour=0)
    samples: list[Sample] = []
    for t in range(int(start.timestamp()), int(REPORT_AT.timestamp()) + 1, 300):
        samples.append(("service_cost_per_hour", {"service": "a"}, t, 10.0))
        samples.append(("service_cost_per_hour", {"service": "b"}, t, 4.0))
    return samples


@pytest.fixture(scope="module")
def report_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    server = start_backfilled(tmp_path_factory.mktemp("report-history"), _report_history())
    yield server
    server.close()


def _report_rules(directory: Path, prometheus: str, destination: dict[str, Any]) -> Path:
    data = {
        "prometheus": {"url": prometheus, "timeout": "10s"},
        "destinations": {"finops": {"slack": destination}},
        "reports": {
            "daily-costs": {
                "to": ["finops"],
                "schedule": "0 9 * * 1-5",
                "timezone": "Europe/Berlin",
                "sections": ["spend", "changes"],
                "chart": True,
            }
        },
    }
    path = directory / "routes.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


HOOK = {"webhook_url": {"secret": "slack-webhook-url"}}
BOT = {"token": {"secret": "slack-bot-token"}, "channel": DEFAULT_CHANNEL}


def test_check_lists_the_reports() -> None:
    result = run("check", "--config", "rules/routes.yaml", env=SECRET_ENV)
    assert result.returncode == 0, result.stderr
    assert "  reports (1):\n" in result.stdout
    assert (
        "    daily-costs: '0 9 * * 1-5' Europe/Berlin, to finops-slack; "
        "spend, waste, budgets, changes, incidents; chart\n"
    ) in result.stdout


def test_report_dry_run_prints_the_report_and_writes_the_chart(
    report_prometheus: PrometheusServer, tmp_path: Path
) -> None:
    config = _report_rules(tmp_path, report_prometheus.url, HOOK)
    chart = tmp_path / "out.png"
    at = REPORT_AT.isoformat()
    result = run(
        "report", "daily-costs", "--config", str(config), "--at", at, "--dry-run",
        "--chart", str(chart),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    local = REPORT_AT.astimezone(ZoneInfo("Europe/Berlin"))
    assert out.startswith(f"Cost report daily-costs: 24h to {local:%a %d %b %Y %H:%M %Z}\n")
    # 24 h at $10/h and $4/h; the month to date is 224 h: 2240 and 896.
    assert "  total $336.00 in the window, $3,136 this month\n" in out
    assert "  a: $240.00 (month $2,240)\n" in out
    assert "  b: $96.00 (month $896.00)\n" in out
    # Neither rate changed against its 7-day average.
    assert "Changes against the 7-day average\n  nothing to report\n" in out
    assert f"Graph: {report_prometheus.url}/graph?" in out
    assert f"chart written to {chart}" in result.stderr
    with Image.open(chart) as image:
        assert image.format == "PNG" and image.size == (1200, 600)
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 10  # not blank


def test_report_at_a_local_time_is_read_in_the_reports_timezone(
    report_prometheus: PrometheusServer, tmp_path: Path
) -> None:
    config = _report_rules(tmp_path, report_prometheus.url, HOOK)
    local = REPORT_AT.astimezone(ZoneInfo("Europe/Berlin")).strftime("%Y-%m-%d %H:%M")
    by_local = run("report", "daily-costs", "--config", str(config), "--at", local, "--dry-run")
    by_rfc = run(
        "report", "daily-costs", "--config", str(config), "--dry-run",
        "--at", REPORT_AT.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )  # fmt: skip
    assert by_local.returncode == 0, by_local.stderr
    assert by_local.stdout == by_rfc.stdout


def test_report_names_the_known_reports_when_asked_for_another() -> None:
    result = run("report", "weekly", "--config", "rules/routes.yaml", "--dry-run")
    assert result.returncode == 2
    assert result.stderr == (
        "alert-router: no report 'weekly' in rules/routes.yaml (reports: daily-costs)\n"
    )


def test_report_refuses_a_time_it_cannot_read() -> None:
    result = run("report", "daily-costs", "--config", "rules/routes.yaml", "--at", "9am")
    assert result.returncode == 2
    assert result.stderr == (
        "alert-router: --at '9am' is not a time: write RFC 3339 (2026-03-02T09:00:00+01:00) "
        "or 'YYYY-MM-DD HH:MM' in the report's timezone (Europe/Berlin)\n"
    )


def test_report_without_prometheus_says_which_sections_are_missing(tmp_path: Path) -> None:
    config = _report_rules(tmp_path, f"http://127.0.0.1:{free_port()}", HOOK)
    result = run("report", "daily-costs", "--config", str(config), "--dry-run")
    assert result.returncode == 1
    assert "alert-router: section spend unavailable: " in result.stderr
    assert "alert-router: section changes unavailable: " in result.stderr
    assert "Spend\n  unavailable: " in result.stdout


def test_report_needs_the_secret_of_its_destination(
    report_prometheus: PrometheusServer, tmp_path: Path
) -> None:
    config = _report_rules(tmp_path, report_prometheus.url, HOOK)
    result = run("report", "daily-costs", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr == (
        "alert-router: destination finops needs the secret slack-webhook-url, which is not set\n"
    )


def test_report_to_a_webhook_sends_the_text_and_the_graph_link(
    report_prometheus: PrometheusServer, slack_webhook: SlackWebhookServer, tmp_path: Path
) -> None:
    config = _report_rules(tmp_path, report_prometheus.url, HOOK)
    result = run(
        "report", "daily-costs", "--config", str(config), "--at", REPORT_AT.isoformat(),
        env={"SLACK_WEBHOOK_URL": slack_webhook.url},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "report daily-costs sent to finops\n"
    [message] = slack_webhook.messages
    text = json.dumps(message)
    assert "a: $240.00 (month $2,240)" in text
    assert "Graph in Prometheus" in text and f"{report_prometheus.url}/graph?" in text


def test_report_to_a_bot_uploads_the_chart_in_its_thread(
    report_prometheus: PrometheusServer, slack_api: SlackApiServer, tmp_path: Path
) -> None:
    config = _report_rules(tmp_path, report_prometheus.url, BOT)
    result = run(
        "report", "daily-costs", "--config", str(config), "--at", REPORT_AT.isoformat(),
        env={"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": slack_api.api_url},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [posted] = slack_api.messages(DEFAULT_CHANNEL)
    assert "a: $240.00 (month $2,240)" in posted.all_text()
    assert "Graph in Prometheus" not in posted.all_text()  # the chart is there instead
    [upload] = slack_api.uploads()
    assert upload.completed and upload.thread_ts == posted.ts
    assert upload.data is not None
    with Image.open(io.BytesIO(upload.data)) as image:
        assert image.size == (1200, 600)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # RFC 3339, with Z or an offset.
        ("2026-03-02T08:00:00Z", datetime(2026, 3, 2, 8, 0, tzinfo=UTC)),
        ("2026-03-02T09:00:00+01:00", datetime(2026, 3, 2, 8, 0, tzinfo=UTC)),
        # A wall time in Berlin: CET in March, CEST in July.
        ("2026-03-02 09:00", datetime(2026, 3, 2, 8, 0, tzinfo=UTC)),
        ("2026-07-02 09:00", datetime(2026, 7, 2, 7, 0, tzinfo=UTC)),
        # 02:30 happens twice on the fall-back day: the first one (CEST), as the schedule.
        ("2026-10-25 02:30", datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
    ],
)
def test_report_at_reads_rfc_3339_and_wall_times(text: str, expected: datetime) -> None:
    assert parse_at(text, ZoneInfo("Europe/Berlin")) == expected


@pytest.mark.parametrize("text", ["2026-13-45 25:00", "2026-03-02T09:00:00", "tomorrow"])
def test_report_at_refuses_what_is_not_a_time(text: str) -> None:
    with pytest.raises(ValueError, match="is not a time: write RFC 3339"):
        parse_at(text, ZoneInfo("Europe/Berlin"))
