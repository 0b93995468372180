from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.migrate import migrate

from ..conftest import BACKEND, REDIS_URL, make_settings
from .processes import Proc, spawn, wait_ready

pytestmark = pytest.mark.e2e


@pytest.fixture
async def stack_env(database_url: str) -> dict[str, str]:
    """Environment for processes of one stack: on PostgreSQL runs they also share a real Redis."""
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL if BACKEND == "postgres" else "",
        "REDIS_PREFIX": f"cmltest-{uuid.uuid4().hex[:8]}",
        "LOG_LEVEL": "INFO",
        "WORKER_HEARTBEAT_SECONDS": "0.5",
        "WORKER_ALIVE_SECONDS": "3",
        "LEASE_SECONDS": "3",
        "RELAY_POLL_INTERVAL": "0.1",
        "COMMAND_POLL_INTERVAL": "0.2",
        "SHUTDOWN_GRACE_SECONDS": "5",
        "HOUSEKEEPING_INTERVAL": "1",
    }
    db = Database(make_settings(database_url))
    await migrate(db)
    await db.dispose()
    return env


@pytest.fixture
async def db_of(stack_env: dict[str, str]) -> AsyncIterator[Database]:
    db = Database(make_settings(stack_env["DATABASE_URL"]))
    yield db
    await db.dispose()


Start = Callable[..., "Proc"]


@pytest.fixture
async def start(stack_env: dict[str, str], tmp_path: Path) -> AsyncIterator[Callable[..., object]]:
    procs: list[Proc] = []

    async def _start(role: str, *args: str, **env: str) -> Proc:
        proc = spawn(role, {**stack_env, **env}, tmp_path, *args)
        procs.append(proc)
        await wait_ready(proc)
        return proc

    yield _start
    for proc in procs:
        if proc.popen.poll() is None:
            proc.stop()
