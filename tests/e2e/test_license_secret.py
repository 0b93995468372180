"""A license token never stays in the database, on any path: registered, refused by CML, and queued for a worker
deleted before the command ran. On SQLite the database's files themselves (db, -wal, -shm) are searched."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import CommandRow, CommandSecretRow, EventRow

from ..sse import open_stream
from .conftest import Sandbox
from .test_fleet import command_done, fleet_ready, run_command

pytestmark = pytest.mark.e2e


def _files(database_url: str) -> list[Path]:
    path = make_url(database_url).database
    if path is None:  # PostgreSQL: its files are not ours to read
        return []
    return [Path(path + suffix) for suffix in ("", "-wal", "-shm")]


def _files_holding(database_url: str, token: str) -> list[str]:
    return [f.name for f in _files(database_url) if f.exists() and token.encode() in f.read_bytes()]


async def _assert_forgotten(db: Database, database_url: str, token: str) -> None:
    """Nothing in the tables holds the token, and (SQLite) no file does either, within a few seconds: the log is
    truncated just after the command's outcome is committed."""
    async with db.session(write=False) as session:
        assert (await session.execute(select(func.count()).select_from(CommandSecretRow))).scalar_one() == 0
        payloads = [str(p) for p in (await session.scalars(select(CommandRow.payload))).all()]
        events = [str(d) for d in (await session.scalars(select(EventRow.data))).all()]
    assert not [text for text in payloads + events if token in text]
    deadline = time.monotonic() + 15
    while holding := _files_holding(database_url, token):
        assert time.monotonic() < deadline, f"the token is still in {holding}"
        await asyncio.sleep(0.2)


def _token() -> str:
    return f"lic-{uuid.uuid4().hex}"  # a shape the CML simulator accepts


async def test_a_license_token_leaves_no_trace_on_any_path(
    sandbox: Sandbox, start: Any, db_of: Database, stack_env: dict[str, str]
) -> None:
    url = stack_env["DATABASE_URL"]
    api = await start("api")
    worker_process = await start("worker")
    async with httpx.AsyncClient(base_url=api.url, timeout=15) as client, open_stream(api.url) as stream:
        await stream.next()
        workers = await fleet_ready(client, stream, len(sandbox.instance_ids))
        running = [w for w in workers.values() if w["status"] == "running"]
        first, second = running[0], running[1]
        if first["license_status"] == "registered":
            done = await run_command(client, stream, "DELETE", f"/api/workers/{first['id']}/license")
            assert done.type == "command.completed", done.data

        # Registered: CML accepts the token.
        token = _token()
        done = await run_command(client, stream, "POST", f"/api/workers/{first['id']}/license", json={"token": token})
        assert done.type == "command.completed", done.data
        assert (await client.get(f"/api/workers/{first['id']}")).json()["license_status"] == "registered"
        await _assert_forgotten(db_of, url, token)

        # Refused: CML answers 409 (already registered, no re-registration asked for).
        token = _token()
        done = await run_command(client, stream, "POST", f"/api/workers/{first['id']}/license", json={"token": token})
        assert done.type == "command.failed" and "already registered" in done.data["data"]["error"], done.data
        await _assert_forgotten(db_of, url, token)

        # The worker is deleted before the command runs: it fails before it ever reaches CML.
        worker_process.stop()
        token = _token()
        queued = await client.post(f"/api/workers/{second['id']}/license", json={"token": token})
        assert queued.status_code == 202, queued.text
        assert (await client.delete(f"/api/workers/{second['id']}")).status_code == 200
        await start("worker")
        done = await stream.wait_for(command_done(queued.json()["command_id"]), timeout=30)
        assert done.type == "command.failed" and "No worker" in done.data["data"]["error"], done.data
        await _assert_forgotten(db_of, url, token)
