"""Every environment variable a deployment file sets is something the app (or a named consumer) reads, every
deployment provides what production needs, and the app accepts the settings each one gives it."""

from __future__ import annotations

import re

import pytest

from .test_helm import VALUE_SETS
from .tools import (
    ALLOWED_ENV,
    DEPLOY,
    DOCKERFILE,
    SECRET_PLACEHOLDERS,
    SYSTEMD,
    compose_config,
    container_env,
    helm_render,
    load_app_settings,
)

# What every deployment must give the app: production storage, events, access, the public URL and the shutdown
# grace the stop timeouts are measured against.
REQUIRED = {"DATABASE_URL", "REDIS_URL", "AUTH_MODE", "PUBLIC_URL", "SHUTDOWN_GRACE_SECONDS"}
REQUIRED_OIDC = {"OIDC_ISSUER", "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET"}
REQUIRED_API = {"APP_HOST", "APP_PORT"}
REQUIRED_CONTAINER_WORKER = {"WORKER_HEALTH_HOST"}


def unknown(names: set[str]) -> list[str]:
    return sorted(names - ALLOWED_ENV)


def systemd_env() -> tuple[dict[str, str], set[str]]:
    """env.example: the active KEY=value lines, and every name it mentions (commented examples too)."""
    active: dict[str, str] = {}
    mentioned: set[str] = set()
    for line in (SYSTEMD / "env.example").read_text().splitlines():
        match = re.match(r"^\s*(#?)\s*([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            mentioned.add(match.group(2))
            if not match.group(1):
                active[match.group(2)] = match.group(3)
    return active, mentioned


def assert_production_ready(env: dict[str, str], where: str, monkeypatch: pytest.MonkeyPatch, *, api: bool) -> None:
    missing = REQUIRED - set(env)
    if env.get("AUTH_MODE") == "oidc":
        missing |= REQUIRED_OIDC - set(env)
    if api:
        missing |= REQUIRED_API - set(env)
    assert not missing, f"{where} does not set {sorted(missing)}"
    settings = load_app_settings(env, monkeypatch)
    assert settings.database_url.startswith("postgresql+asyncpg://"), where
    assert settings.redis_url, where
    assert settings.auth_mode in ("token", "oidc"), where


# --- names ---------------------------------------------------------------------------------------------------


def test_compose_sets_only_known_variables() -> None:
    services = compose_config("observability")["services"]
    for name in ("migrate", "api", "worker"):
        assert not unknown(set(services[name]["environment"])), name


def test_helm_sets_only_known_variables() -> None:
    for values_name, values in VALUE_SETS.items():
        for doc in helm_render(values):
            if doc["kind"] in ("Deployment", "Job"):
                for container in doc["spec"]["template"]["spec"]["containers"]:
                    names = {e["name"] for e in container["env"]}
                    assert not unknown(names), f"{values_name}: {doc['metadata']['name']}: {unknown(names)}"


def test_systemd_sets_only_known_variables() -> None:
    _, mentioned = systemd_env()
    assert not unknown(mentioned)
    for unit in SYSTEMD.glob("*.service"):
        inline = set(re.findall(r"^Environment=\"?([A-Z_][A-Z0-9_]*)=", unit.read_text(), re.M))
        assert not unknown(inline), unit.name


def test_image_and_scripts_read_only_known_variables() -> None:
    runtime = DOCKERFILE.read_text().rsplit("\nFROM ", 1)[1]
    env_block = re.findall(r"^ENV (.*?)(?<!\\)$", runtime, re.M | re.S)
    dockerfile_names = set(re.findall(r"([A-Z][A-Z0-9_]*)=", " ".join(env_block)))
    assert {"APP_HOST", "WORKER_HEALTH_HOST", "WORKER_HEALTH_PORT"} <= dockerfile_names
    assert not unknown(dockerfile_names)
    entrypoint = (DEPLOY / "docker" / "entrypoint.sh").read_text()
    entrypoint_names = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", entrypoint))
    assert entrypoint_names == {"WORKER_MODE", "WORKER_HEALTH_PORT"}
    healthcheck = (DEPLOY / "docker" / "healthcheck.py").read_text()
    assert set(re.findall(r"env\.get\(\"([A-Z_]+)\"", healthcheck)) <= ALLOWED_ENV


def test_the_check_notices_an_unknown_variable() -> None:
    assert unknown({"DATABASE_URL", "AWS_ACCESS_KEY_ID", "DATABSE_URL"}) == ["DATABSE_URL"]


# --- what each deployment provides ---------------------------------------------------------------------------


def test_compose_provides_what_production_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose_config()["services"]
    for name in ("migrate", "api", "worker"):
        env = {k: v for k, v in services[name]["environment"].items() if v is not None}
        assert_production_ready(env, f"compose {name}", monkeypatch, api=name == "api")
        assert env["APP_HOST"] == "0.0.0.0"
        assert set(env) >= REQUIRED_CONTAINER_WORKER and env["WORKER_HEALTH_HOST"] == "0.0.0.0"
        assert env["WORKER_HEALTH_PORT"].isdigit(), "the entrypoint passes it as --health-port"


def test_compose_token_mode_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: v for k, v in compose_config(env={"AUTH_MODE": "token"})["services"]["api"]["environment"].items() if v}
    assert env["AUTH_MODE"] == "token"
    assert_production_ready(env, "compose api (token)", monkeypatch, api=True)


@pytest.mark.parametrize("values_name", list(VALUE_SETS))
def test_helm_provides_what_production_needs(values_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = helm_render(VALUE_SETS[values_name])
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        env = container_env(container)
        where = f"helm {values_name}: {doc['metadata']['name']}"
        assert_production_ready(env, where, monkeypatch, api=container["args"][0] == "api")
        assert env["APP_HOST"] == "0.0.0.0" and env["WORKER_HEALTH_HOST"] == "0.0.0.0"
        for secret in SECRET_PLACEHOLDERS:
            entry = next((e for e in container["env"] if e["name"] == secret), None)
            if entry is not None and secret == "DATABASE_URL":
                assert "valueFrom" in entry, "the database URL (with its password) comes from a Secret"


def test_systemd_provides_what_production_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    env, _ = systemd_env()
    assert_production_ready(env, "systemd env.example", monkeypatch, api=True)
    assert env["APP_HOST"] == "127.0.0.1", "behind a local reverse proxy"


def test_a_broken_setting_is_noticed(monkeypatch: pytest.MonkeyPatch) -> None:
    env, _ = systemd_env()
    with pytest.raises(AssertionError, match="does not set"):
        assert_production_ready({k: v for k, v in env.items() if k != "REDIS_URL"}, "x", monkeypatch, api=True)
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        assert_production_ready({**env, "DATABASE_URL": "mysql://x"}, "x", monkeypatch, api=True)
