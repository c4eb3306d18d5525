"""k8s/overlays/ha: several replicas on Redis. The overlay builds, every object is valid
offline, it changes only what several replicas need, and its names line up with the example
Secret and the example Redis (k8s/overlays/ha/redis), which runs as the router expects."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from receiver.config.settings import Settings
from receiver.store import open_store
from receiver.store.redis.store import RedisStore
from tests.k8s.files import K8S, REPO, SECRET_EXAMPLE, load_documents, load_yaml
from tests.k8s.test_manifests import _k8s_versions, _validate
from tests.support import free_port, require_binary, wait_until

OVERLAY = K8S / "overlays" / "ha"
REDIS_EXAMPLE = OVERLAY / "redis"
REDIS_SECRET_EXAMPLE = OVERLAY / "redis-secret.example.yaml"
REDIS_SECRET = "alert-router-redis"
URL_KEY = "redis-url"
PASSWORD_KEY = "redis-password"
NAMESPACE = "monitoring"
NAME = "alert-router"
REPLICAS = 3
MIN_AVAILABLE = 2

Objects = dict[tuple[str, str], dict[str, Any]]


def build(path: Path) -> Objects:
    """`kubectl kustomize path`, by (kind, name)."""
    kubectl = require_binary("kubectl")
    built = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    assert built.returncode == 0, built.stderr
    objects: Objects = {}
    for doc in yaml.safe_load_all(built.stdout):
        if doc:
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in objects, f"{key} twice in {path}"
            objects[key] = doc
    return objects


@pytest.fixture(scope="module")
def ha() -> Objects:
    # kustomize refuses an overlay inside its base's directory ("cycle detected"), so the
    # base lives in k8s/base/ and k8s/kustomization.yaml only points at it.
    assert (K8S / "base" / "kustomization.yaml").is_file(), "the kustomize base is k8s/base/"
    return build(OVERLAY)


@pytest.fixture(scope="module")
def base() -> Objects:
    return build(K8S)


@pytest.fixture(scope="module")
def redis_example() -> Objects:
    return build(REDIS_EXAMPLE)


def _secret() -> dict[str, Any]:
    (secret,) = load_documents(REDIS_SECRET_EXAMPLE)
    return secret


def _pod(objects: Objects) -> dict[str, Any]:
    template: dict[str, Any] = objects[("Deployment", NAME)]["spec"]["template"]
    return template


def _container(objects: Objects) -> dict[str, Any]:
    (container,) = _pod(objects)["spec"]["containers"]
    found: dict[str, Any] = container
    return found


def _env(objects: Objects) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in _container(objects)["env"]}


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _redis_pod(redis_example: Objects) -> dict[str, Any]:
    template: dict[str, Any] = redis_example[("StatefulSet", REDIS_SECRET)]["spec"]["template"]
    return template


# -- builds and validates -----------------------------------------------------------------


def test_overlay_and_example_redis_validate_against_the_kubernetes_schema(
    ha: Objects, redis_example: Objects
) -> None:
    for version in _k8s_versions():
        for obj in [*ha.values(), *redis_example.values(), _secret()]:
            _validate(obj, version)
    namespaces = {o["metadata"].get("namespace") for o in [*ha.values(), *redis_example.values()]}
    assert namespaces == {NAMESPACE}
    assert _secret()["metadata"]["namespace"] == NAMESPACE


def test_example_secret_is_not_applied() -> None:
    for kustomization in (OVERLAY / "kustomization.yaml", REDIS_EXAMPLE / "kustomization.yaml"):
        listed = load_yaml(kustomization).get("resources", [])
        assert not any(REDIS_SECRET_EXAMPLE.name in item for item in listed), (
            "the example Secret holds placeholders: it must not be applied by kustomize"
        )


def test_overlay_changes_only_what_several_replicas_need(ha: Objects, base: Objects) -> None:
    claims = {key for key in base if key[0] == "PersistentVolumeClaim"}
    assert claims, "the base keeps its SQLite state on a PersistentVolumeClaim"
    assert set(ha) == set(base) - claims
    for key in ha:
        if key[0] not in ("Deployment", "PodDisruptionBudget", "NetworkPolicy"):
            assert ha[key] == base[key], f"{key} differs from the base"
    assert _container(ha)["image"] == _container(base)["image"]
    changed = {n for n, e in _env(ha).items() if _env(base).get(n) != e}
    assert changed == {"ALERT_ROUTER_STATE"}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert _container(ha)[probe] == _container(base)[probe]


# -- replicas, rollouts, disruptions ------------------------------------------------------


def test_three_replicas_roll_one_at_a_time_on_separate_nodes(ha: Objects) -> None:
    spec = ha[("Deployment", NAME)]["spec"]
    labels = _pod(ha)["metadata"]["labels"]
    assert spec["replicas"] == REPLICAS
    assert spec["strategy"]["type"] == "RollingUpdate"
    rolling = spec["strategy"]["rollingUpdate"]
    # No surge pod (it would find no free node under the anti-affinity), one down at most.
    assert (rolling["maxSurge"], rolling["maxUnavailable"]) == (0, 1)
    assert REPLICAS - rolling["maxUnavailable"] >= MIN_AVAILABLE
    (term,) = _pod(ha)["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert _selects(term["labelSelector"]["matchLabels"], labels)
    for spread in _pod(ha)["spec"]["topologySpreadConstraints"]:
        assert _selects(spread["labelSelector"]["matchLabels"], labels)


def test_disruption_budget_keeps_two_replicas(ha: Objects) -> None:
    budget = ha[("PodDisruptionBudget", NAME)]["spec"]
    assert budget["minAvailable"] == MIN_AVAILABLE < REPLICAS
    assert "maxUnavailable" not in budget, "minAvailable and maxUnavailable exclude each other"
    deployment = ha[("Deployment", NAME)]["spec"]
    labels = _pod(ha)["metadata"]["labels"]
    assert _selects(budget["selector"]["matchLabels"], labels)
    assert budget["selector"] == deployment["selector"]


# -- state in Redis -------------------------------------------------------------------------


def test_state_is_the_redis_url_from_the_secret(ha: Objects) -> None:
    state = _env(ha)["ALERT_ROUTER_STATE"]
    assert "value" not in state
    ref = state["valueFrom"]["secretKeyRef"]
    secret = _secret()
    assert ref == {"name": REDIS_SECRET, "key": URL_KEY}
    assert secret["metadata"]["name"] == REDIS_SECRET
    assert URL_KEY in secret["stringData"]
    assert "optional" not in ref, "without its Redis a replica must not start on SQLite"
    known = {f.alias for f in Settings.model_fields.values() if f.alias}
    assert set(_env(ha)) <= known
    # The URL selects the Redis store (opening it would connect; building it does not).
    assert isinstance(open_store(secret["stringData"][URL_KEY]), RedisStore)


def test_no_volume_for_sqlite_state(ha: Objects, base: Objects) -> None:
    assert not [key for key in ha if key[0] == "PersistentVolumeClaim"]
    volumes = {v["name"]: v for v in _pod(ha)["spec"]["volumes"]}
    mounts = {m["name"]: m for m in _container(ha)["volumeMounts"]}
    assert not [v for v in volumes.values() if "persistentVolumeClaim" in v]
    assert set(volumes) == set(mounts), "every volume is mounted and every mount has a volume"
    sqlite_dir = PurePosixPath(_env(base)["ALERT_ROUTER_STATE"]["value"]).parent
    assert str(sqlite_dir) not in {m["mountPath"] for m in mounts.values()}
    # Nothing writable but /tmp: no replica can fall back to a SQLite file of its own.
    assert _container(ha)["securityContext"]["readOnlyRootFilesystem"] is True


def test_network_policies_let_only_the_router_reach_redis(
    ha: Objects, redis_example: Objects
) -> None:
    router_labels = _pod(ha)["metadata"]["labels"]
    redis_labels = _redis_pod(redis_example)["metadata"]["labels"]
    (port,) = _redis_pod(redis_example)["spec"]["containers"][0]["ports"]
    egress = ha[("NetworkPolicy", NAME)]["spec"]["egress"]
    to_redis = [
        rule
        for rule in egress
        if {(p["port"], p["protocol"]) for p in rule["ports"]} == {(port["containerPort"], "TCP")}
    ]
    assert len(to_redis) == 1
    (peer,) = to_redis[0]["to"]
    assert _selects(peer["podSelector"]["matchLabels"], redis_labels)
    assert not _selects(peer["podSelector"]["matchLabels"], router_labels)
    policy = redis_example[("NetworkPolicy", REDIS_SECRET)]["spec"]
    assert _selects(policy["podSelector"]["matchLabels"], redis_labels)
    (ingress,) = policy["ingress"]
    (source,) = ingress["from"]
    assert _selects(source["podSelector"]["matchLabels"], router_labels)
    assert [p["port"] for p in ingress["ports"]] == [port["containerPort"]]


# -- the example Redis ----------------------------------------------------------------------


def _redis_args(redis_example: Objects) -> str:
    (container,) = _redis_pod(redis_example)["spec"]["containers"]
    assert container["command"] == ["sh", "-c"]
    (script,) = container["args"]
    text: str = script
    return text


def test_example_redis_is_configured_as_the_router_needs(redis_example: Objects) -> None:
    args = _redis_args(redis_example)
    # DESIGN/README: an acknowledged alert is on disk (AOF, fsync on every write) and no key
    # is ever evicted.
    for setting in ("--appendonly yes", "--appendfsync always", "--maxmemory-policy noeviction"):
        assert setting in args
    statefulset = redis_example[("StatefulSet", REDIS_SECRET)]["spec"]
    service = redis_example[("Service", REDIS_SECRET)]
    (container,) = statefulset["template"]["spec"]["containers"]
    assert container["image"].startswith("redis:7.")
    assert statefulset["serviceName"] == service["metadata"]["name"]
    assert _selects(service["spec"]["selector"], statefulset["template"]["metadata"]["labels"])
    (claim,) = statefulset["volumeClaimTemplates"]
    data = [m for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"]]
    assert [m["mountPath"] for m in data] == ["/data"] and "--dir /data" in args
    passwords = {
        e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e
    }
    assert passwords["REDIS_PASSWORD"] == {"name": REDIS_SECRET, "key": PASSWORD_KEY}
    assert passwords["REDISCLI_AUTH"] == passwords["REDIS_PASSWORD"]


def test_example_secret_url_points_at_the_example_redis(redis_example: Objects) -> None:
    values = _secret()["stringData"]
    url = urlsplit(values[URL_KEY])
    service = redis_example[("Service", REDIS_SECRET)]
    (port,) = service["spec"]["ports"]
    assert url.scheme == "redis"
    assert url.hostname == f"{service['metadata']['name']}.{NAMESPACE}.svc"
    assert url.port == port["port"]
    assert url.password == values[PASSWORD_KEY]


# -- the example Redis and the overlay's router, running ----------------------------------------


@pytest.fixture
def example_redis(redis_example: Objects, tmp_path: Path) -> Iterator[str]:
    """The example Redis's own command (Debian's redis-server, paths moved under tmp_path),
    with the example Secret's password; yields the example redis-url pointed at it."""
    require_binary("redis-server")
    script = _redis_args(redis_example)
    port = free_port()
    moves = {
        "/run/redis": str(tmp_path),
        "--dir /data": f"--dir {tmp_path}",
        "--port 6379": f"--port {port} --bind 127.0.0.1",
    }
    for old, new in moves.items():
        assert script.count(old) >= 1, old
        script = script.replace(old, new)
    values = _secret()["stringData"]
    env = {**os.environ, "REDIS_PASSWORD": values[PASSWORD_KEY]}
    with (tmp_path / "redis.log").open("w") as log:
        process = subprocess.Popen(["sh", "-c", script], env=env, stdout=log, stderr=log)
    url = urlsplit(values[URL_KEY])
    try:
        yield url._replace(netloc=f":{url.password}@127.0.0.1:{port}").geturl()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_router_with_the_overlay_settings_is_ready_on_the_example_redis(
    ha: Objects, example_redis: str, tmp_path: Path
) -> None:
    """`alert-router serve` with the overlay's environment, ConfigMap and Secrets, its
    ALERT_ROUTER_STATE the example redis-url: ready, and no warning about persistence."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERT_ROUTER_")}
    for name, item in _env(ha).items():
        if "value" in item:
            env[name] = item["value"]
    env["ALERT_ROUTER_STATE"] = example_redis
    rules = tmp_path / "rules"
    rules.mkdir()
    for key, text in ha[("ConfigMap", "alert-router-rules")]["data"].items():
        (rules / key).write_text(text, encoding="utf-8")
    secrets = tmp_path / "alert-secrets"
    secrets.mkdir()
    (secret,) = load_documents(SECRET_EXAMPLE)
    for key, value in secret["stringData"].items():
        (secrets / key).write_text(value, encoding="utf-8")
    port = free_port()
    env.update(
        {
            "ALERT_ROUTER_CONFIG": str(rules / PurePosixPath(env["ALERT_ROUTER_CONFIG"]).name),
            "ALERT_ROUTER_SECRETS_DIR": str(secrets),
            "ALERT_ROUTER_HOST": "127.0.0.1",
            "ALERT_ROUTER_PORT": str(port),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
        }
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "receiver", "serve"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def ready() -> bool:
            assert process.poll() is None, log_path.read_text(encoding="utf-8")
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, timeout=30)
    finally:
        process.terminate()
        process.wait(timeout=15)
    output = log_path.read_text(encoding="utf-8")
    assert "without AOF" not in output and "may evict" not in output, output
    assert _secret()["stringData"][PASSWORD_KEY] not in output, "the Redis password was logged"
    assert not list(tmp_path.glob("**/*.db")), "a replica wrote a SQLite file"
