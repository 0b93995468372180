"""Shared fixtures. TEST_DATABASE=sqlite|postgres picks the backend for the whole run; `make test` runs both.

PostgreSQL (127.0.0.1:5432, user postgres, trust auth) and Redis (127.0.0.1:6379) must be running: tests that
need them fail rather than skip, so CI can never pass without them.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis
import uvicorn
from sqlalchemy import func, select
from starlette.types import ASGIApp

from cml_cloud_manager.apps.api import create_app
from cml_cloud_manager.apps.worker import QuietServer
from cml_cloud_manager.config import ProcessRole, Settings, load_settings
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.migrate import migrate
from cml_cloud_manager.storage.models import EventRow

from .e2e.processes import free_port

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
        "auth_mode": "none",
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


async def serve_app(app: ASGIApp, port: int, http: str = "auto") -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """Serve an ASGI app with uvicorn on this event loop; returns once it accepts connections."""
    server = QuietServer(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="auto", http=http)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # uvicorn offers a flag, not an event, for "listening"
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return server, task


@asynccontextmanager
async def serve_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API app served by uvicorn in this process on a loopback port (real HTTP, real streaming)."""
    port = free_port()
    app = create_app(ProcessRole.API, settings)
    server, task = await serve_app(app, port)

    async def newest(request: httpx.Request) -> None:
        """The fleet is read from memory, current to the API's relay: what a test committed itself (directly, or by
        running a command in-process) is read back as a client that saw its events would, naming the newest one
        (a write ignores the header)."""
        if request.url.path.startswith("/api/workers") and "x-event-sequence" not in request.headers:
            async with app.state.db.session(write=False) as session:
                seq = (await session.execute(select(func.max(EventRow.seq)))).scalar() or 0
            request.headers["x-event-sequence"] = str(seq)

    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=10, event_hooks={"request": [newest]}
        ) as client:
            yield client
    finally:
        await app.state.hub.shutdown()
        server.should_exit = True
        await task


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_api(settings) as client:
        yield client
