"""All settings, read once from the environment and `.env`.

The README's settings table documents every field below by its environment name (the upper-cased field name).
"""

from __future__ import annotations

import enum
import ipaddress
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class ProcessRole(enum.StrEnum):
    API = "api"
    WORKER = "worker"
    ALL = "all"

    @property
    def serves_http(self) -> bool:
        return self in (ProcessRole.API, ProcessRole.ALL)

    @property
    def runs_jobs(self) -> bool:
        return self in (ProcessRole.WORKER, ProcessRole.ALL)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # --- process -------------------------------------------------------------------------------------------
    worker_mode: ProcessRole | None = None
    app_host: str = "127.0.0.1"
    app_port: int = Field(8000, ge=1, le=65535)
    public_url: str = ""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_file: Path | None = None
    access_log: bool = True
    shutdown_grace_seconds: float = Field(10.0, gt=0)
    health_timeout_seconds: float = Field(0.5, gt=0)

    # --- access ---------------------------------------------------------------------------------------------
    auth_mode: Literal["token", "oidc", "none"] = "token"
    auth_tokens_file: Path | None = None
    auth_admin_token_file: Path = Path("var/admin-token")
    session_ttl_hours: float = Field(12, gt=0)
    auth_cache_seconds: float = Field(10.0, ge=0)
    session_encryption_keys: SecretStr = SecretStr("")
    session_encryption_keys_file: Path = Path("var/session-keys")
    session_cookie_secure: Literal["auto", "true", "false"] = "auto"
    login_attempts_per_minute: int = Field(10, ge=1)
    # Peers whose X-Forwarded-For/-Proto are believed (uvicorn reads the client address right to left, skipping
    # these): only the reverse proxies, never "*", or any client could pick the address the login limit counts.
    forwarded_allow_ips: Annotated[list[str], NoDecode] = ["127.0.0.1"]
    max_request_bytes: int = Field(1_048_576, ge=1024)
    oidc_issuer: str = ""
    oidc_discovery_url: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr = SecretStr("")
    oidc_audience: str = ""
    oidc_scopes: str = "openid profile email"
    oidc_role_map: dict[str, str] = {"admin": "admin", "operator": "operator", "viewer": "viewer"}

    # --- storage -------------------------------------------------------------------------------------------
    database_url: str = "sqlite+aiosqlite:///./var/cml-cloud-manager.db"
    database_pool_size: int = Field(10, ge=1)
    database_timeout_seconds: float = Field(10.0, gt=0)
    redis_url: str = ""
    redis_prefix: str = "cml-cloud-manager"

    # --- events / SSE --------------------------------------------------------------------------------------
    events_retention_seconds: int = Field(86_400, ge=60)
    relay_poll_interval: float = Field(0.25, gt=0)
    relay_safety_poll_interval: float = Field(2.0, gt=0)
    sse_heartbeat_seconds: float = Field(15.0, gt=0)
    sse_client_queue_size: int = Field(1000, ge=10)
    sse_write_timeout_seconds: float = Field(30.0, gt=0)
    sse_client_buffer_bytes: int = Field(1_048_576, ge=65_536)
    history_days: float = Field(7, gt=0)

    # --- worker process --------------------------------------------------------------------------------------
    worker_heartbeat_seconds: float = Field(5.0, gt=0)
    worker_alive_seconds: float = Field(20.0, gt=0)
    worker_health_host: str = "127.0.0.1"
    # The worker's CPU niceness: its jobs have seconds to spare, the API's requests do not (docs/adr/0006).
    worker_nice: int = Field(10, ge=0, le=19)
    lease_seconds: float = Field(15.0, ge=1)
    command_poll_interval: float = Field(0.5, gt=0)
    command_max_attempts: int = Field(3, ge=1)

    # --- jobs ----------------------------------------------------------------------------------------------
    worker_metrics_interval: float = Field(300, gt=0)
    worker_metrics_enabled: bool = True
    labs_refresh_interval: float = Field(1800, gt=0)
    labs_refresh_enabled: bool = True
    auto_import_interval: float = Field(3600, gt=0)
    auto_import_enabled: bool = False
    idle_detection_interval: float = Field(1800, gt=0)
    idle_detection_enabled: bool = True
    housekeeping_interval: float = Field(600, gt=0)
    housekeeping_enabled: bool = True
    metrics_concurrency: int = Field(50, ge=1)
    metrics_change_threshold: float = Field(5.0, ge=0)
    state_follow_timeout_seconds: float = Field(900, gt=0)

    # --- AWS -----------------------------------------------------------------------------------------------
    aws_regions: Annotated[list[str], NoDecode] = ["us-east-1"]
    aws_endpoint_url: str = ""
    aws_max_attempts: int = Field(6, ge=1)
    aws_max_concurrency: int = Field(32, ge=1)
    cml_ami_name_pattern: str = "cml2*"
    cml_ami_owners: Annotated[list[str], NoDecode] = ["self"]
    cml_ami_id: str = ""
    cml_instance_type: str = "c5.2xlarge"
    cml_subnet_id: str = ""
    cml_security_group_ids: Annotated[list[str], NoDecode] = []
    cml_key_name: str = ""
    cml_instance_tags: dict[str, str] = {}

    # --- CML -----------------------------------------------------------------------------------------------
    cml_url_template: str = "https://{public_ip}"
    cml_username: str = "admin"
    cml_password: SecretStr = SecretStr("")
    cml_password_file: Path | None = None
    cml_verify_tls: bool = True
    cml_ca_bundle: Path | None = None
    cml_timeout: float = Field(10.0, gt=0)

    # --- idle detection -------------------------------------------------------------------------------------
    idle_timeout_minutes: float = Field(60, gt=0)
    idle_snooze_minutes: float = Field(60, ge=0)
    # CML records our own lab operations under the built-in admin id; they are not user activity.
    idle_excluded_users: str = "^00000000-0000-4000-a000-000000000000$"

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("aws_regions", "cml_ami_owners", "cml_security_group_ids", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("forwarded_allow_ips", mode="before")
    @classmethod
    def _proxy_addresses(cls, value: object) -> object:
        entries = [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value
        if not isinstance(entries, list):
            return entries
        for entry in entries:
            if entry == "*":
                raise ValueError(
                    "'*' trusts X-Forwarded-For from every peer, so any client could choose the address it is "
                    "known by; list the reverse proxies' addresses or networks (e.g. 10.0.0.5,10.1.0.0/16)"
                )
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network (e.g. 10.0.0.5 or 10.1.0.0/16)") from None
            if network.prefixlen == 0:
                raise ValueError(
                    f"{entry!r} is every address, like '*': list the reverse proxies' addresses or networks "
                    "(e.g. 10.0.0.5,10.1.0.0/16)"
                )
        return entries

    @field_validator("cml_url_template")
    @classmethod
    def _template_fields(cls, value: str) -> str:
        try:
            value.format(public_ip="x", private_ip="x", instance_id="x", public_dns="x", private_dns="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"unknown placeholder {exc}; use {{public_ip}}, {{private_ip}}, {{instance_id}}, {{public_dns}}"
            ) from None
        return value

    @field_validator("idle_excluded_users")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    def cml_password_value(self) -> str:
        """The CML password, from CML_PASSWORD_FILE when set (a mounted secret), else CML_PASSWORD."""
        if self.cml_password_file is not None:
            return self.cml_password_file.read_text().strip()
        return self.cml_password.get_secret_value()

    def base_url(self) -> str:
        """Where the API is reached: PUBLIC_URL, else its listen address (behind a proxy, set PUBLIC_URL)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.app_host}]" if ":" in self.app_host else self.app_host  # an IPv6 address
        return f"http://{host}:{self.app_port}"

    def job_enabled(self, name: str) -> bool:
        return bool(getattr(self, name.replace("-", "_") + "_enabled"))

    @field_validator("session_encryption_keys")
    @classmethod
    def _fernet_keys(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value():
            parse_fernet_keys(value.get_secret_value())
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be empty (no Redis) or start with redis://, rediss:// or unix://")
        return value

    @model_validator(mode="after")
    def _auth_consistent(self) -> Settings:
        if self.auth_mode == "none" and self.app_host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError(
                f"AUTH_MODE=none is only allowed when APP_HOST is a loopback address (APP_HOST is {self.app_host})"
            )
        if self.auth_mode == "oidc" and not (self.oidc_issuer and self.oidc_client_id):
            raise ValueError("AUTH_MODE=oidc needs OIDC_ISSUER and OIDC_CLIENT_ID")
        bad = sorted(set(self.oidc_role_map.values()) - {"admin", "operator", "viewer"})
        if bad:
            raise ValueError(f"OIDC_ROLE_MAP maps to unknown roles {bad} (use admin, operator, viewer)")
        return self

    @cached_property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def job_intervals(self) -> dict[str, float]:
        return {
            "worker-metrics": self.worker_metrics_interval,
            "labs-refresh": self.labs_refresh_interval,
            "auto-import": self.auto_import_interval,
            "idle-detection": self.idle_detection_interval,
            "housekeeping": self.housekeeping_interval,
        }


def parse_fernet_keys(text: str) -> list[str]:
    """Keys separated by commas or line breaks, first one first; each must be a Fernet key."""
    from cryptography.fernet import Fernet  # imported here: most processes never read a key

    keys = [part.strip() for part in re.split(r"[,\s]+", text) if part.strip()]
    if not keys:
        raise ValueError("no key given")
    for number, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except ValueError:
            raise ValueError(
                f"key {number} is not a Fernet key (32 url-safe base64-encoded bytes); make one with "
                '`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`'
            ) from None
    return keys


class SettingsError(Exception):
    """A setting could not be parsed; the message names it by its environment variable."""


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = str(error["msg"]).removeprefix("Value error, ")
            if not error["loc"]:  # a rule across settings: the message names them
                problems.append(message)
                continue
            name = "_".join(str(part) for part in error["loc"]).upper()
            shown = "" if _SECRET.search(name) else f" (got {error.get('input')!r})"
            problems.append(f"{name}: {message}{shown}")
        raise SettingsError("Invalid setting: " + "; ".join(problems)) from None


_SECRET = re.compile("PASSWORD|SECRET|TOKEN|KEY")
