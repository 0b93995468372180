"""All settings, read once from the environment and `.env`.

The README's settings table documents every field below by its environment name (the upper-cased field name).
"""

from __future__ import annotations

import enum
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Role(enum.StrEnum):
    API = "api"
    WORKER = "worker"
    ALL = "all"

    @property
    def serves_http(self) -> bool:
        return self in (Role.API, Role.ALL)

    @property
    def runs_jobs(self) -> bool:
        return self in (Role.WORKER, Role.ALL)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # --- process -------------------------------------------------------------------------------------------
    worker_mode: Role | None = None
    app_host: str = "127.0.0.1"
    app_port: int = Field(8000, ge=1, le=65535)
    public_url: str = ""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_file: Path | None = None
    access_log: bool = True
    shutdown_grace_seconds: float = Field(10.0, gt=0)

    # --- storage -------------------------------------------------------------------------------------------
    database_url: str = "sqlite+aiosqlite:///./var/cml-cloud-manager.db"
    database_pool_size: int = Field(10, ge=1)
    redis_url: str = ""
    redis_prefix: str = "cml-cloud-manager"

    # --- events / SSE --------------------------------------------------------------------------------------
    events_retention_seconds: int = Field(86_400, ge=60)
    relay_poll_interval: float = Field(0.25, gt=0)
    relay_safety_poll_interval: float = Field(2.0, gt=0)
    sse_heartbeat_seconds: float = Field(15.0, gt=0)
    sse_client_queue_size: int = Field(1000, ge=10)
    metric_samples_per_worker: int = Field(2016, ge=10)

    # --- worker process --------------------------------------------------------------------------------------
    worker_heartbeat_seconds: float = Field(5.0, gt=0)
    worker_alive_seconds: float = Field(20.0, gt=0)
    worker_health_host: str = "127.0.0.1"
    lease_seconds: float = Field(15.0, ge=1)
    command_poll_interval: float = Field(0.5, gt=0)
    command_max_attempts: int = Field(3, ge=1)

    # --- jobs ----------------------------------------------------------------------------------------------
    worker_metrics_interval: float = Field(300, gt=0)
    labs_refresh_interval: float = Field(1800, gt=0)
    auto_import_interval: float = Field(3600, gt=0)
    auto_import_enabled: bool = False
    idle_detection_interval: float = Field(1800, gt=0)
    housekeeping_interval: float = Field(600, gt=0)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be empty (no Redis) or start with redis://, rediss:// or unix://")
        return value

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


class SettingsError(Exception):
    """A setting could not be parsed; the message names it by its environment variable."""


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = "_".join(str(part) for part in error["loc"]).upper() or "settings"
            problems.append(f"{name}: {error['msg']} (got {error.get('input')!r})")
        raise SettingsError("Invalid setting " + "; ".join(problems)) from None
