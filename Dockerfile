# syntax=docker/dockerfile:1
# alert-router image: `docker build -t alert-router:0.1.0 .`
#
# Two stages: the builder installs the dependencies and the package into a virtualenv;
# the final stage copies only that virtualenv onto a clean slim base (no compilers, no pip
# cache, no sources) and runs as a fixed non-root UID, which k8s/base/deployment.yaml repeats.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from pyproject.toml alone, so a code change reuses this layer.
# Every dependency ships wheels for amd64 and arm64: the builder needs no compiler either.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt
COPY README.md ./
COPY receiver ./receiver
RUN pip install --no-cache-dir --no-deps . \
    && python -c "import pathlib, shutil, receiver; shutil.rmtree(pathlib.Path(receiver.__file__).parent / 'demo')"
# ^ The demo starts Prometheus and Alertmanager binaries for a laptop: not part of the service.

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="alert-router" \
      org.opencontainers.image.description="Alertmanager webhook receiver: cost context, dedup, routing to Slack and PagerDuty" \
      org.opencontainers.image.licenses="Apache-2.0"
# The image's defaults match k8s/base/deployment.yaml: rules at /app/rules (a mounted ConfigMap
# replaces them), SQLite state under /var/lib/alert-router (a PersistentVolumeClaim there).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ALERT_ROUTER_CONFIG=/app/rules/routes.yaml \
    ALERT_ROUTER_STATE=/var/lib/alert-router/alert-router.db \
    ALERT_ROUTER_LOG_FORMAT=json
RUN groupadd --system --gid 10001 alert-router \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin alert-router \
    && mkdir -p /var/lib/alert-router \
    && chown 10001:10001 /var/lib/alert-router
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY rules/ /app/rules/
USER 10001:10001
EXPOSE 8080
# Kubernetes uses the Deployment's probes; this is for `docker run`.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ALERT_ROUTER_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["alert-router"]
CMD ["serve"]
