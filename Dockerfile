# syntax=docker/dockerfile:1
# CML Cloud Manager: one image for every role. The role comes from WORKER_MODE (api | worker | all) or from the
# first argument (api, worker, all, migrate, token ...); see deploy/docker/entrypoint.sh and docs/deployment.md.
#
#   docker build -t cml-cloud-manager .
#   docker run --rm cml-cloud-manager migrate            # with DATABASE_URL etc. in the environment
#   docker run -e WORKER_MODE=worker cml-cloud-manager   # a worker, /health and /metrics on :8081

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: the app and its dependencies in a virtual environment under /opt -------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# uv installs exactly the versions in uv.lock (the version below is the one the lock pins, checked by a test).
RUN pip install --no-cache-dir uv==0.13.9 \
 && python -m venv /opt/cml-cloud-manager
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY src/ src/
# Every dependency ships manylinux wheels, so no compiler is needed. pip and setuptools are removed afterwards:
# the runtime image installs nothing.
RUN UV_PROJECT_ENVIRONMENT=/opt/cml-cloud-manager UV_PYTHON_DOWNLOADS=never \
    uv sync --locked --no-editable --no-cache --python /opt/cml-cloud-manager/bin/python \
 && /opt/cml-cloud-manager/bin/pip uninstall --yes setuptools pip

# ---- runtime: the venv, two small scripts and a non-root user ----------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="cml-cloud-manager" \
      org.opencontainers.image.description="Control plane for fleets of Cisco Modeling Labs workers on AWS"
RUN groupadd --system --gid 10001 cml \
 && useradd --system --uid 10001 --gid cml --no-create-home --home-dir /var/lib/cml-cloud-manager \
      --shell /usr/sbin/nologin cml \
 && install -d -o cml -g cml -m 0750 /var/lib/cml-cloud-manager
COPY --from=builder /opt/cml-cloud-manager /opt/cml-cloud-manager
COPY --chmod=0755 deploy/docker/entrypoint.sh /usr/local/bin/cml-entrypoint
COPY --chmod=0755 deploy/docker/healthcheck.py /usr/local/bin/cml-healthcheck
# Containers listen on every interface (AUTH_MODE=none is refused there: use token or oidc). The worker's
# health port is passed as --health-port by the entrypoint; it runs at niceness WORKER_NICE (10 unless set). The generated admin token (AUTH_MODE=token) and the
# default SQLite database live in the data directory: mount a volume there, or use PostgreSQL.
# (DL3064 flags AUTH_ADMIN_TOKEN_FILE by its name; it is a path, not a secret.)
# hadolint ignore=DL3064
ENV PATH="/opt/cml-cloud-manager/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    APP_HOST=0.0.0.0 \
    APP_PORT=8000 \
    WORKER_HEALTH_HOST=0.0.0.0 \
    WORKER_HEALTH_PORT=8081 \
    AUTH_ADMIN_TOKEN_FILE=/var/lib/cml-cloud-manager/admin-token
WORKDIR /var/lib/cml-cloud-manager
USER 10001:10001
EXPOSE 8000 8081
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["cml-healthcheck"]
ENTRYPOINT ["cml-entrypoint"]
