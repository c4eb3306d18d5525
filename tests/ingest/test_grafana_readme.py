"""The README's Grafana contact point (provisioning YAML) says what the router reads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from receiver.config.schema import DEFAULT_SIGNATURE_HEADER, GrafanaHmacSpec
from receiver.ingest.endpoint import ALERTS_METHODS

README = Path(__file__).resolve().parents[2] / "README.md"
HEADING = "## Grafana Alerting"
# What Grafana's webhook settings are named in provisioning (grafana/alerting:
# receivers/webhook/v1/config.go, the json/yaml tags).
GRAFANA_WEBHOOK_SETTINGS = {
    "url",
    "httpMethod",
    "maxAlerts",
    "authorization_scheme",
    "authorization_credentials",
    "username",
    "password",
    "title",
    "message",
    "tlsConfig",
    "hmacConfig",
    "headers",
    "payload",
}
HMAC_SETTINGS = {"secret", "header", "timestampHeader"}


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(HEADING + "\n")
    end = text.find("\n## ", start + len(HEADING))
    return text[start : end if end != -1 else len(text)]


def _yaml_blocks() -> list[Any]:
    blocks = re.findall(r"```yaml\n(.*?)```", _section(), flags=re.DOTALL)
    return [yaml.safe_load(block) for block in blocks]


def _contact_point() -> dict[str, Any]:
    [provisioning] = [b for b in _yaml_blocks() if "contactPoints" in b]
    return provisioning  # type: ignore[no-any-return]


def test_the_provisioning_block_is_grafanas_format() -> None:
    provisioning = _contact_point()
    assert provisioning["apiVersion"] == 1
    [point] = provisioning["contactPoints"]
    assert point["name"] and isinstance(point["orgId"], int)
    [receiver] = point["receivers"]
    assert receiver["type"] == "webhook"
    settings = receiver["settings"]
    assert set(settings) <= GRAFANA_WEBHOOK_SETTINGS
    assert set(settings["hmacConfig"]) <= HMAC_SETTINGS
    # Grafana refuses Basic and the Authorization header together.
    assert not ({"username", "password"} & set(settings))


def test_the_contact_point_matches_the_router() -> None:
    settings = _contact_point()["contactPoints"][0]["receivers"][0]["settings"]
    assert settings["url"].endswith("/alerts")
    assert settings["httpMethod"] in ALERTS_METHODS
    assert settings["authorization_scheme"] == "Bearer"
    # Secrets come from Grafana's environment, never written into the file.
    assert settings["authorization_credentials"].startswith("$")
    hmac = settings["hmacConfig"]
    assert hmac["secret"].startswith("$")
    assert hmac["header"] == DEFAULT_SIGNATURE_HEADER


def test_the_rules_file_block_is_valid_and_names_the_same_headers() -> None:
    [rules_block] = [b for b in _yaml_blocks() if "grafana" in b]
    spec = GrafanaHmacSpec.model_validate(rules_block["grafana"]["hmac"])
    hmac = _contact_point()["contactPoints"][0]["receivers"][0]["settings"]["hmacConfig"]
    assert spec.signature_header == hmac["header"]
    assert spec.timestamp_header == hmac["timestampHeader"]
