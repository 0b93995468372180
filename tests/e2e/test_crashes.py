"""Crashes with no goodbye (SIGKILL): PostgreSQL itself under running api/worker processes, and a worker in the
middle of a command. Each ends with every surviving process recovered by itself and the SSE readers matching
the outbox exactly."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.migrate import migrate
from cml_cloud_manager.storage.models import CommandRow, EventRow

from ..conftest import BACKEND, make_settings
from .conftest import Sandbox
from .faults import PrivatePostgres
from .recovery import Reader, match_outbox, poll, readers_on, recovered

pytestmark = pytest.mark.e2e

# Any request while the database is gone: refused connections fail at once, so this is generous.
DOWN_BOUND = 5.0


def pid_of(process_id: str) -> int:
    """Process ids look like `worker@host:PID:suffix`."""
    return int(process_id.split(":")[-2])


async def completed_runs(readers: list[Reader], count: int, timeout: float = 30) -> None:
    """Until every reader has seen `count` more job runs complete (the workers' scheduler is ticking)."""
    start = [sum(e.type == "job.run.completed" for e in r.events) for r in readers]

    async def enough() -> bool | None:
        seen = [sum(e.type == "job.run.completed" for e in r.events) for r in readers]
        return True if all(now - before >= count for now, before in zip(seen, start, strict=True)) else None

    await poll(f"{count} job runs completed on every reader", enough, timeout)


async def timed(call: Any) -> tuple[float, httpx.Response]:
    began = time.monotonic()
    response = await call
    return time.monotonic() - began, response


@pytest.mark.skipif(BACKEND != "postgres", reason="kills a PostgreSQL server; the SQLite run has none")
async def test_postgres_killed_with_sigkill_every_process_recovers_by_itself(
    private_pg: PrivatePostgres, start: Any, stack_env: dict[str, str]
) -> None:
    """kill -9 of the postmaster (no shutdown, no checkpoint: crash recovery on restart) under 2 APIs and 2
    workers with Redis, while housekeeping ticks every second and readers follow both APIs."""
    db = Database(make_settings(private_pg.url))
    try:
        await migrate(db)
        await db.dispose()  # its connections die with the server; a fresh pool afterwards
        stack_env["DATABASE_URL"] = private_pg.url
        apis = [await start("api"), await start("api")]
        workers = [await start("worker"), await start("worker")]
        async with readers_on(*(api.url for api in apis)) as readers, httpx.AsyncClient(timeout=30) as client:
            await completed_runs(readers, 2)
            killed = await asyncio.to_thread(private_pg.kill9)

            read_took, read = await timed(client.get(f"{apis[0].url}/api/commands"))
            fleet_took, fleet = await timed(client.get(f"{apis[0].url}/api/workers"))
            write_took, write = await timed(client.post(f"{apis[1].url}/api/system/jobs/housekeeping/run"))
            health_took, health = await timed(client.get(f"{apis[0].url}/api/health"))
            live = await client.get(f"{apis[1].url}/api/health/live")
            worker_live = await client.get(f"http://127.0.0.1:{workers[0].health_port}/health/live")
            print(
                f"\npostmaster {killed} killed: read {read.status_code} in {read_took:.2f}s, write "
                f"{write.status_code} in {write_took:.2f}s, health {health.status_code} in {health_took:.2f}s"
            )
            for took, response in ((read_took, read), (write_took, write)):
                assert response.status_code == 503, response.text
                assert response.json()["type"].endswith("database_unavailable") and took < DOWN_BOUND
            assert health.status_code == 503 and health_took < DOWN_BOUND, health.text
            # The fleet is served from memory: it answers without the database.
            assert fleet.status_code == 200 and fleet.json()["total"] == 0 and fleet_took < DOWN_BOUND, fleet.text
            assert health.json()["components"]["database"] == "down", health.json()
            assert live.status_code == 200 and worker_live.status_code == 200

            # Its backends notice the postmaster is gone and exit; only then can it start (and recover its WAL).
            await asyncio.to_thread(private_pg.wait_gone, killed)
            await asyncio.to_thread(private_pg.start)
            back = time.monotonic()
            took = await recovered(apis, workers, redis=True)
            print(f"every process recovered {took:.2f}s after PostgreSQL returned")
            await completed_runs(readers, 2)
            compared = await match_outbox(db, readers)
            print(f"readers matched the outbox on {compared} events, {time.monotonic() - back:.1f}s after restart")
        for proc in apis + workers:
            assert proc.popen.poll() is None, f"{proc.role} exited: {proc.output()[-2000:]}"
            assert "Traceback" not in proc.output(), proc.output()[-4000:]
    finally:
        await db.dispose()


async def test_worker_killed_while_a_command_runs_is_taken_over_and_completes_once(
    sandbox: Sandbox, start: Any, stack_env: dict[str, str], db_of: Database
) -> None:
    """kill -9 of the worker running a command (a labs refresh against CML hosts that answer slowly): another
    worker takes it over once its lease lapses and it completes exactly once; readers match the outbox."""
    stack_env.update({"WORKER_METRICS_INTERVAL": "600", "LABS_REFRESH_ENABLED": "false", "CML_TIMEOUT": "15"})
    lease = float(stack_env["LEASE_SECONDS"])
    api = await start("api")
    workers = {proc.popen.pid: proc for proc in [await start("worker") for _ in range(3)]}
    async with readers_on(api.url) as readers, httpx.AsyncClient(base_url=api.url, timeout=10) as client:

        async def fleet_known() -> list[dict[str, Any]] | None:
            items: list[dict[str, Any]] = (await client.get("/api/workers")).json()["items"]
            return items if len(items) == len(sandbox.instance_ids) else None

        items = await poll("the fleet imported", fleet_known, 30)
        target = next(w["id"] for w in items if w["status"] == "running")
        for instance_id in sandbox.instance_ids:  # every CML call takes seconds: time to kill mid-command
            sandbox.sim("PATCH", f"/hosts/{instance_id}/config", {"slow_seconds": 1.5})

        response = await client.post(f"/api/workers/{target}/labs/refresh")
        assert response.status_code == 202, response.text
        command_id = response.json()["command_id"]

        def of_command(kind: str, attempt: int | None = None) -> list[Any]:
            return [
                e
                for e in readers[0].events
                if e.type == kind
                and e.data["data"].get("command_id") == command_id
                and (attempt is None or e.data["data"].get("attempt") == attempt)
            ]

        first = await poll("the command started", lambda: _first(of_command("command.started", 1)), 20)
        victim = pid_of(first.data["data"]["claimed_by"])
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        workers.pop(victim).popen.wait()

        retry = await poll("the command retried", lambda: _first(of_command("command.started", 2)), 4 * lease + 10)
        taken_over = time.monotonic() - killed_at
        assert pid_of(retry.data["data"]["claimed_by"]) in workers
        done = await poll("the command finished", lambda: _first(of_command("command.completed")), 60)
        print(f"\ncommand taken over {taken_over:.1f}s after kill -9 (LEASE_SECONDS={lease:g}), then completed")
        # Not before its lease could have lapsed, not much after (a poll interval and a heartbeat period).
        assert taken_over < 2 * lease + 5, f"take-over took {taken_over:.1f}s with LEASE_SECONDS={lease:g}"

        took = await recovered([api], list(workers.values()), redis=bool(stack_env["REDIS_URL"]))
        compared = await match_outbox(db_of, readers)
        print(f"survivors ready after {took:.1f}s; readers matched the outbox on {compared} events")

    async with db_of.session(write=False) as session:
        row = await session.get(CommandRow, command_id)
        events = (
            await session.scalars(select(EventRow).where(EventRow.type.like("command.%")).order_by(EventRow.seq))
        ).all()
    mine = [e for e in events if (e.data or {}).get("command_id") == command_id]
    kinds = [(e.type, (e.data or {}).get("attempt")) for e in mine if e.type != "command.progress"]
    assert row is not None and (row.status, row.attempts) == ("succeeded", 2), (row and row.status, kinds)
    assert sum(e.type == "command.completed" for e in mine) == 1, kinds
    assert not any(e.type == "command.failed" for e in mine), kinds
    assert [a for kind, a in kinds if kind == "command.started"] == [1, 2], kinds
    assert done.data["data"]["command_id"] == command_id
    for proc in [api, *workers.values()]:
        assert proc.popen.poll() is None and "Traceback" not in proc.output(), proc.output()[-4000:]


async def _first(found: list[Any]) -> Any:
    return found[0] if found else None
