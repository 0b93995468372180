"""Shared fixtures. TEST_DATABASE=sqlite|postgres picks the backend for the whole run; `make test` runs both.

PostgreSQL (127.0.0.1:5432, user postgres, trust auth) and Redis (127.0.0.1:6379) must be running: tests that
need them fail rather than skip, so CI can never pass without them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis

from cml_cloud_manager.config import Settings, load_settings
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.migrate import migrate

BACKEND = os.environ.get("TEST_DATABASE", "sqlite")
PG_ADMIN = os.environ.get("TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_BASE = os.environ.get("TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def pytest_report_header() -> str:
    return f"database backend: {BACKEND} (set TEST_DATABASE=sqlite|postgres)"


async def _create_pg_database() -> str:
    name = f"cmltest_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def _drop_pg_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def database_url(tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database for one test."""
    if BACKEND == "postgres":
        name = await _create_pg_database()
        yield f"{PG_BASE}/{name}"
        await _drop_pg_database(name)
    else:
        yield f"sqlite+aiosqlite:///{tmp_path}/test.db"


@pytest.fixture
def redis_url() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()  # fail, not skip, when Redis is missing
    yield REDIS_URL
    client.close()


def make_settings(database_url: str, **overrides: object) -> Settings:
    base: dict[str, object] = {
        "database_url": database_url,
        "redis_url": "",
        "redis_prefix": f"cmltest-{uuid.uuid4().hex[:8]}",
        "lease_seconds": 3,
        "worker_heartbeat_seconds": 0.5,
        "command_poll_interval": 0.1,
        "relay_poll_interval": 0.05,
        "shutdown_grace_seconds": 3,
    }
    base.update(overrides)
    return load_settings(**base)


@pytest.fixture
async def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings, source="cml-cloud-manager/test")
    await migrate(database)
    yield database
    await database.dispose()
