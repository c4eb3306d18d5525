"""k8s/: every manifest is valid offline, and the names line up across files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from receiver.config.secrets import DEFAULT_SECRETS_DIR, env_name
from receiver.config.settings import Settings
from tests.k8s.conftest import LiveRouter
from tests.k8s.files import (
    ALERTMANAGER_SNIPPET,
    BASE,
    DASHBOARD,
    K8S,
    REPO,
    SECRET_EXAMPLE,
    Manifests,
    generator,
    generator_files,
    kustomization,
    load_documents,
    load_yaml,
    project,
    require_module,
)
from tests.support import require_binary

# Kubernetes versions to validate against: the oldest still supported by GKE and EKS
# (extended support) and the newest schema kubernetes-validate ships.
OLDEST_K8S = "1.29"
CRD_KINDS = ("ServiceMonitor", "PrometheusRule")
RULES_CONFIGMAP = "alert-router-rules"
DASHBOARD_CONFIGMAP = "alert-router-dashboard"
SECRET_NAME = "alert-secrets"
# Keys the router reads whatever the rules say (DESIGN.md, "Secrets").
REQUIRED_SECRET_KEYS = {"webhook-token", "slack-webhook-url", "pagerduty-key"}

# A Prometheus Operator duration (monitoring.coreos.com CRDs: `Duration` pattern).
_DURATION = {
    "type": "string",
    "pattern": (
        r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?"
        r"(([0-9]+)ms)?)$"
    ),
}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
    },
    "additionalProperties": False,
}
_LABEL_SELECTOR = {
    "type": "object",
    "properties": {"matchLabels": _STRING_MAP, "matchExpressions": {"type": "array"}},
    "additionalProperties": False,
}
# The fields of the Prometheus Operator CRDs these manifests use, from the v1 CRDs; unknown
# fields are errors, as a typo would be silently dropped by the API server's pruning.
CRD_SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "ServiceMonitor"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "additionalProperties": False,
                "properties": {
                    "jobLabel": {"type": "string"},
                    "namespaceSelector": {"type": "object"},
                    "selector": _LABEL_SELECTOR,
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string", "pattern": "^/"},
                                "scheme": {"enum": ["http", "https"]},
                                "interval": _DURATION,
                                "scrapeTimeout": _DURATION,
                                "honorLabels": {"type": "boolean"},
                                "relabelings": {"type": "array"},
                                "metricRelabelings": {"type": "array"},
                            },
                        },
                    },
                },
            },
        },
    },
    "PrometheusRule": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "PrometheusRule"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "required": ["groups"],
                "additionalProperties": False,
                "properties": {
                    "groups": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["name", "rules"],
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string", "minLength": 1},
                                "interval": _DURATION,
                                "rules": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["expr"],
                                        "additionalProperties": False,
                                        "properties": {
                                            "alert": {"type": "string"},
                                            "record": {"type": "string"},
                                            "expr": {"type": ["string", "integer"]},
                                            "for": _DURATION,
                                            "labels": _STRING_MAP,
                                            "annotations": _STRING_MAP,
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def _validate(obj: dict[str, Any], version: str) -> None:
    """Validate one object: core kinds against the Kubernetes schema, CRDs against ours."""
    where = f"{obj['kind']}/{obj['metadata']['name']}"
    if obj["kind"] in CRD_KINDS:
        jsonschema = require_module("jsonschema")
        errors = list(jsonschema.Draft202012Validator(CRD_SCHEMAS[obj["kind"]]).iter_errors(obj))
        details = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
        assert not details, f"{where}: " + "; ".join(details)
        return
    kubernetes_validate = require_module("kubernetes_validate")
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        problem = f"{where} is not valid Kubernetes {version}: {path}: {exc.message}"
    else:
        return
    # Outside the except block, so the report is this line, not the schema's whole text.
    pytest.fail(problem)


def _k8s_versions() -> list[str]:
    kubernetes_validate = require_module("kubernetes_validate")
    latest: str = kubernetes_validate.latest_version()
    return [OLDEST_K8S, latest]


def _pod(manifests: Manifests) -> dict[str, Any]:
    template: dict[str, Any] = manifests.get("Deployment", "alert-router")["spec"]["template"]
    return template


def _container(manifests: Manifests) -> dict[str, Any]:
    containers: list[dict[str, Any]] = _pod(manifests)["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _env(manifests: Manifests) -> dict[str, str]:
    return {e["name"]: e["value"] for e in _container(manifests)["env"]}


def _volume(manifests: Manifests, kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod volume of a kind (configMap, secret, ...) and the container's mount of it."""
    volumes = [v for v in _pod(manifests)["spec"]["volumes"] if kind in v]
    assert len(volumes) == 1, f"expected one {kind} volume, found {len(volumes)}"
    mounts = [m for m in _container(manifests)["volumeMounts"] if m["name"] == volumes[0]["name"]]
    assert len(mounts) == 1, f"volume {volumes[0]['name']} is mounted {len(mounts)} times"
    return volumes[0], mounts[0]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _example_secret() -> dict[str, Any]:
    (secret,) = load_documents(SECRET_EXAMPLE)
    return secret


def _secret_keys_in_rules(path: Path) -> set[str]:
    """destinations.*.*.{webhook_url,token,routing_key}.secret of a routes file."""
    keys: set[str] = set()
    for destination in load_yaml(path)["destinations"].values():
        for spec in destination.values():
            for field in ("webhook_url", "token", "routing_key"):
                ref = spec.get(field)
                if isinstance(ref, dict) and "secret" in ref:
                    keys.add(ref["secret"])
    return keys


# -- offline schema validation ---------------------------------------------------------


def test_every_resource_validates_against_the_kubernetes_schema(manifests: Manifests) -> None:
    for version in _k8s_versions():
        for obj in manifests:
            _validate(obj, version)


def test_example_secret_validates_and_is_not_deployed() -> None:
    secret = _example_secret()
    for version in _k8s_versions():
        _validate(secret, version)
    assert SECRET_EXAMPLE.name not in kustomization()["resources"], (
        "the example Secret holds placeholders: it must not be applied by kustomize"
    )


def test_crd_schemas_reject_a_misspelt_field(manifests: Manifests) -> None:
    monitor = manifests.one("ServiceMonitor")
    broken = {**monitor, "spec": {**monitor["spec"], "endpoint": monitor["spec"]["endpoints"]}}
    with pytest.raises(AssertionError, match="endpoint"):
        _validate(broken, OLDEST_K8S)


def test_kustomize_build_validates_and_generates_the_configmaps() -> None:
    kubectl = require_binary("kubectl")
    built = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120
    )
    assert built.returncode == 0, built.stderr
    objects = [doc for doc in yaml.safe_load_all(built.stdout) if doc]
    for version in _k8s_versions():
        for obj in objects:
            _validate(obj, version)
    assert {obj["metadata"].get("namespace") for obj in objects} == {"monitoring"}
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    # No hash suffix: the Deployment mounts the ConfigMaps by these exact names.
    rules = by_name[("ConfigMap", RULES_CONFIGMAP)]
    assert rules["data"] == {
        key: path.read_text(encoding="utf-8")
        for key, path in generator_files(RULES_CONFIGMAP).items()
    }
    dashboard = by_name[("ConfigMap", DASHBOARD_CONFIGMAP)]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"] == {DASHBOARD.name: DASHBOARD.read_text(encoding="utf-8")}
    (container,) = by_name[("Deployment", "alert-router")]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"alert-router:{project()['project']['version']}"


# -- kustomization ------------------------------------------------------------------------


def test_kustomization_lists_every_manifest_file() -> None:
    k = kustomization()
    listed = set(k["resources"])
    generated = {
        str(path.relative_to(BASE))
        for entry in k["configMapGenerator"]
        for path in generator_files(entry["name"]).values()
    }
    for name in listed | generated:
        assert (BASE / name).is_file(), f"kustomization.yaml names {name}, which does not exist"
    on_disk = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk - generated == listed, "every manifest in k8s/ is in resources, and only they"
    assert k["namespace"] == "monitoring"


def test_image_tag_is_the_package_version() -> None:
    (image,) = kustomization()["images"]
    assert image["name"] == "alert-router"
    assert image["newTag"] == project()["project"]["version"]


# -- the rules ConfigMap ----------------------------------------------------------------------


def test_configmap_rules_are_the_shipped_rules() -> None:
    files = generator_files(RULES_CONFIGMAP)
    assert set(files) == {"routes.yaml"}
    shipped = REPO / "rules" / "routes.yaml"
    assert files["routes.yaml"].read_text(encoding="utf-8") == shipped.read_text(
        encoding="utf-8"
    ), (
        "k8s/base/routes.yaml differs from rules/routes.yaml: "
        "cp rules/routes.yaml k8s/base/routes.yaml"
    )
    assert generator(RULES_CONFIGMAP)["options"]["disableNameSuffixHash"] is True


def _mounted_rules(tmp_path: Path) -> Path:
    """The rules ConfigMap as the pod sees it: one file per key, in one directory."""
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    for key, source in generator_files(RULES_CONFIGMAP).items():
        (rules_dir / key).write_bytes(source.read_bytes())
    return rules_dir / "routes.yaml"


def _clean_env() -> dict[str, str]:
    """This process's environment without any alert-router setting or secret."""
    secret_vars = {env_name(k) for k in _example_secret()["stringData"]}
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ALERT_ROUTER_", "SLACK_", "PAGERDUTY_")) and k not in secret_vars
    }


@pytest.mark.parametrize("secrets_from", ["mounted-secret", "environment"])
def test_configmap_rules_pass_alert_router_check(tmp_path: Path, secrets_from: str) -> None:
    values: dict[str, str] = _example_secret()["stringData"]
    env = _clean_env()
    secrets_dir = tmp_path / "alert-secrets"
    secrets_dir.mkdir()
    if secrets_from == "mounted-secret":
        # The Secret as mounted at /etc/alert-secrets: one file per key.
        for key, value in values.items():
            (secrets_dir / key).write_text(value, encoding="utf-8")
    else:
        env.update({env_name(key): value for key, value in values.items()})
    env["ALERT_ROUTER_SECRETS_DIR"] = str(secrets_dir)
    result = subprocess.run(
        [sys.executable, "-m", "receiver", "check", "--config", str(_mounted_rules(tmp_path))],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for value in values.values():
        assert value not in result.stdout + result.stderr, "check printed a secret"


# -- names line up across files ------------------------------------------------------------


def test_secret_name_mount_and_keys_line_up(manifests: Manifests) -> None:
    volume, mount = _volume(manifests, "secret")
    secret = _example_secret()
    assert volume["secret"]["secretName"] == secret["metadata"]["name"] == SECRET_NAME
    assert mount["readOnly"] is True
    assert mount["mountPath"] == str(DEFAULT_SECRETS_DIR)
    assert _env(manifests)["ALERT_ROUTER_SECRETS_DIR"] == mount["mountPath"]
    keys = set(secret["stringData"])
    assert keys >= REQUIRED_SECRET_KEYS
    for routes in (REPO / "rules" / "routes.yaml", BASE / "routes.yaml"):
        missing = _secret_keys_in_rules(routes) - keys
        assert not missing, f"{routes.name} needs secret keys {missing} the example lacks"
    assert "items" not in volume["secret"], "mount every key, so new keys need no edit"


def test_alertmanager_reads_the_webhook_token_of_the_same_secret() -> None:
    config = load_yaml(ALERTMANAGER_SNIPPET)
    (receiver,) = [r for r in config["receivers"] if r["name"] == "alert-router"]
    (webhook,) = receiver["webhook_configs"]
    token_file = PurePosixPath(webhook["http_config"]["authorization"]["credentials_file"])
    # The Prometheus Operator mounts Alertmanager's spec.secrets at /etc/alertmanager/secrets/.
    assert token_file.parent == PurePosixPath("/etc/alertmanager/secrets") / SECRET_NAME
    assert token_file.name == "webhook-token"
    assert token_file.name in _example_secret()["stringData"]


def test_alertmanager_posts_to_the_service(manifests: Manifests) -> None:
    config = load_yaml(ALERTMANAGER_SNIPPET)
    (receiver,) = [r for r in config["receivers"] if r["name"] == "alert-router"]
    (webhook,) = receiver["webhook_configs"]
    url = urlsplit(webhook["url"])
    service = manifests.one("Service")
    (port,) = service["spec"]["ports"]
    namespace = kustomization()["namespace"]
    assert url.hostname == f"{service['metadata']['name']}.{namespace}.svc"
    assert url.port == port["port"]
    assert url.path == "/alerts"
    assert webhook["send_resolved"] is True
    assert webhook["max_alerts"] == 0


def test_rules_configmap_is_mounted_where_the_app_reads_it(manifests: Manifests) -> None:
    volume, mount = _volume(manifests, "configMap")
    assert volume["configMap"]["name"] == RULES_CONFIGMAP
    # Mounted as a directory: a subPath mount never sees ConfigMap updates.
    assert "subPath" not in mount
    assert mount["readOnly"] is True
    config = PurePosixPath(_env(manifests)["ALERT_ROUTER_CONFIG"])
    assert config.parent == PurePosixPath(mount["mountPath"])
    assert config.name in generator_files(RULES_CONFIGMAP)


def test_state_lives_on_the_volume_claim(manifests: Manifests) -> None:
    volume, mount = _volume(manifests, "persistentVolumeClaim")
    claim = manifests.one("PersistentVolumeClaim")
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    state = PurePosixPath(_env(manifests)["ALERT_ROUTER_STATE"])
    assert state.parent == PurePosixPath(mount["mountPath"])
    assert mount.get("readOnly", False) is False
    # SQLite on a ReadWriteOnce volume: never two pods at once.
    deployment = manifests.get("Deployment", "alert-router")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"


def test_writable_paths_are_volumes_on_a_read_only_root(manifests: Manifests) -> None:
    assert _container(manifests)["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in _pod(manifests)["spec"]["volumes"]}
    mounts = {m["name"]: m for m in _container(manifests)["volumeMounts"]}
    assert set(volumes) == set(mounts), "every volume is mounted and every mount has a volume"
    tmp = [m for m in mounts.values() if m["mountPath"] == "/tmp"]
    assert tmp and "emptyDir" in volumes[tmp[0]["name"]]


def test_ports_line_up(manifests: Manifests) -> None:
    (port,) = _container(manifests)["ports"]
    assert port["containerPort"] == Settings.model_fields["port"].default == 8080
    assert _env(manifests)["ALERT_ROUTER_PORT"] == str(port["containerPort"])
    (service_port,) = manifests.one("Service")["spec"]["ports"]
    assert service_port["targetPort"] in (port["name"], port["containerPort"])
    assert service_port["name"] == "http"
    container = _container(manifests)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in (port["name"], port["containerPort"])
    (endpoint,) = manifests.one("ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["port"] == service_port["name"]
    assert endpoint["path"] == "/metrics"
    (ingress,) = manifests.one("NetworkPolicy")["spec"]["ingress"]
    assert [p["port"] for p in ingress["ports"]] == [port["containerPort"]]


def test_probes_use_the_health_endpoints(manifests: Manifests) -> None:
    container = _container(manifests)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_deployed_configuration_serves_and_passes_its_probes(
    manifests: Manifests, live_router: LiveRouter
) -> None:
    """`alert-router serve` with the Deployment's env, ConfigMap and example Secret."""
    container = _container(manifests)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        path = container[probe]["httpGet"]["path"]
        response = httpx.get(f"{live_router.url}{path}", timeout=5)
        assert response.status_code == 200, f"{probe} {path}: {response.status_code}"
    (endpoint,) = manifests.one("ServiceMonitor")["spec"]["endpoints"]
    metrics = httpx.get(f"{live_router.url}{endpoint['path']}", timeout=5)
    assert metrics.status_code == 200
    assert "alert_router_config_last_reload_successful 1.0" in metrics.text


def test_selectors_match_the_pod_labels(manifests: Manifests) -> None:
    deployment = manifests.get("Deployment", "alert-router")
    pod_labels = _pod(manifests)["metadata"]["labels"]
    assert _selects(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    service = manifests.one("Service")
    assert _selects(service["spec"]["selector"], pod_labels)
    assert _selects(
        manifests.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"], pod_labels
    )
    assert _selects(
        manifests.one("NetworkPolicy")["spec"]["podSelector"]["matchLabels"], pod_labels
    )
    monitor = manifests.one("ServiceMonitor")
    assert _selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    # Same namespace as the Service, and the job label is the Service name, which the
    # router's own alerts select (`up{job="alert-router"}`).
    assert "namespaceSelector" not in monitor["spec"]
    assert "jobLabel" not in monitor["spec"]
    assert service["metadata"]["name"] == "alert-router"


def test_network_policy_lets_in_only_alertmanager_and_prometheus(manifests: Manifests) -> None:
    policy = manifests.one("NetworkPolicy")["spec"]
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    (ingress,) = policy["ingress"]
    sources = [peer["podSelector"]["matchLabels"] for peer in ingress["from"]]
    assert sources == [
        {"app.kubernetes.io/name": "alertmanager"},
        {"app.kubernetes.io/name": "prometheus"},
    ]


def test_network_policy_lets_out_what_the_router_calls(manifests: Manifests) -> None:
    egress = manifests.one("NetworkPolicy")["spec"]["egress"]
    allowed = {(p["port"], p["protocol"]) for rule in egress for p in rule["ports"]}
    prometheus = urlsplit(_env(manifests)["PROMETHEUS_URL"])
    assert (prometheus.port, "TCP") in allowed
    assert {(53, "UDP"), (53, "TCP"), (443, "TCP"), (9093, "TCP")} <= allowed
    to_prometheus = [
        r
        for r in egress
        if (prometheus.port, "TCP") in {(p["port"], p["protocol"]) for p in r["ports"]}
    ]
    assert to_prometheus[0]["to"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
    ]


def test_environment_is_what_the_app_reads(manifests: Manifests) -> None:
    known = {f.alias for f in Settings.model_fields.values() if f.alias}
    env = _env(manifests)
    assert set(env) <= known, f"unknown settings: {set(env) - known}"
    assert env["PROMETHEUS_URL"] == "http://prometheus.monitoring.svc:9090"
    assert env["ALERT_ROUTER_LOG_FORMAT"] == "json"
    # A service link for the Service `alert-router` would set ALERT_ROUTER_PORT=tcp://...
    assert _pod(manifests)["spec"]["enableServiceLinks"] is False


def test_pod_is_locked_down(manifests: Manifests) -> None:
    pod = _pod(manifests)["spec"]
    container = _container(manifests)
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == security["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "add" not in security["capabilities"]
    assert pod["automountServiceAccountToken"] is False
    account = manifests.one("ServiceAccount")
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    resources = container["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
