"""Rules reload: a valid new file is applied, an invalid one refused (old rules serve)."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from receiver.config.reloader import RulesHolder
from receiver.config.rules import RulesError
from receiver.metrics import Metrics
from receiver.samples import webhook
from tests.service import TOKEN, make_settings, start_service
from tests.support import wait_until

ONE = """
destinations:
  a: {slack: {webhook_url: {secret: slack-webhook-url}}}
  b: {pagerduty: {routing_key: {secret: pagerduty-key}}}
default: a
"""
TWO = ONE.replace("default: a", "default: b")
BROKEN = ONE.replace("default: a", "default: nowhere")


def configmap_dir(root: Path, content: str, version: str) -> None:
    """Lay out a directory the way the kubelet mounts a ConfigMap: key -> ..data/key."""
    data = root / f"..{version}"
    data.mkdir()
    (data / "routes.yaml").write_text(content)
    tmp_link = root / "..data_tmp"
    tmp_link.symlink_to(data.name)
    os.replace(tmp_link, root / "..data")  # atomic swap, as the kubelet does
    link = root / "routes.yaml"
    if not link.is_symlink():
        link.symlink_to("..data/routes.yaml")


def sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    value = metrics.registry.get_sample_value(name, labels or {})
    assert value is not None
    return value


def test_configmap_symlink_swap_is_seen(tmp_path: Path) -> None:
    configmap_dir(tmp_path, ONE, "v1")
    metrics = Metrics(CollectorRegistry())
    holder = RulesHolder(tmp_path / "routes.yaml", metrics)
    holder.load()
    assert holder.rules.default == "a"
    assert not holder.changed()
    configmap_dir(tmp_path, TWO, "v2")
    assert holder.changed()
    assert holder.reload("file changed")
    assert holder.rules.default == "b"
    assert sample(metrics, "alert_router_config_reloads_total", {"outcome": "success"}) == 2


def test_invalid_new_file_keeps_old_rules(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(ONE)
    metrics = Metrics(CollectorRegistry())
    applied: list[str | None] = []
    holder = RulesHolder(path, metrics, on_change=lambda r: applied.append(r.default))
    holder.load()
    path.write_text(BROKEN)
    assert holder.reload("SIGHUP") is False
    assert holder.rules.default == "a"
    assert applied == []
    assert sample(metrics, "alert_router_config_reloads_total", {"outcome": "failure"}) == 1
    assert sample(metrics, "alert_router_config_last_reload_successful") == 0
    # Not retried in a loop: the broken file is remembered until it changes again.
    assert not holder.changed()
    path.write_text(TWO)
    os.utime(path, (1e9 + 5, 1e9 + 5))
    assert holder.changed()
    assert holder.reload("file changed") is True
    assert applied == ["b"]
    assert sample(metrics, "alert_router_config_last_reload_successful") == 1


def test_validator_refuses_rules_missing_secrets(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(ONE)
    holder = RulesHolder(path, Metrics(CollectorRegistry()), validate=lambda r: ["no secret"])
    with pytest.raises(RulesError) as caught:
        holder.load()
    assert caught.value.problems == ["no secret"]


def test_running_service_applies_a_changed_file(tmp_path: Path) -> None:
    config = tmp_path / "cm"
    config.mkdir()
    configmap_dir(config, ONE, "v1")
    settings = make_settings(tmp_path, config / "routes.yaml")
    server, sent = start_service(settings)
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        labels = {"alertname": "Unrouted", "service": "x"}
        httpx.post(f"{server.url}/alerts", json=webhook([(labels, {})]), headers=auth)
        wait_until(lambda: len(sent.to("a")) == 1, timeout=10)
        configmap_dir(config, BROKEN, "v2")
        wait_until(
            lambda: (
                server.service.metrics.registry.get_sample_value(
                    "alert_router_config_reloads_total", {"outcome": "failure"}
                )
                == 1
            ),
            timeout=10,
        )
        configmap_dir(config, TWO, "v3")
        wait_until(lambda: server.service.holder.rules.default == "b", timeout=10)
        labels2 = {"alertname": "Unrouted", "service": "y"}
        httpx.post(f"{server.url}/alerts", json=webhook([(labels2, {})]), headers=auth)
        wait_until(lambda: len(sent.to("b")) == 1, timeout=10)
    finally:
        server.stop()


def test_grafana_hmac_follows_the_rules_in_force(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(ONE)
    holder = RulesHolder(path, Metrics(CollectorRegistry()))
    # Before the first load: Grafana's defaults.
    assert holder.grafana_hmac().signature_header == "X-Grafana-Alerting-Signature"
    holder.load()
    assert holder.grafana_hmac().timestamp_header is None
    path.write_text(ONE + "grafana: {hmac: {timestamp_header: X-Signed-At}}\n")
    holder.load()
    assert holder.grafana_hmac().timestamp_header == "X-Signed-At"
