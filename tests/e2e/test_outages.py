"""PostgreSQL restarting under the API, and shutting down under load (500 streams, a job mid-run)."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import httpx
import pytest

from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.migrate import migrate
from cml_cloud_manager.storage.models import JobRunRow

from ..conftest import BACKEND, make_settings
from ..sse import open_stream
from .conftest import Sandbox
from .faults import PrivatePostgres

pytestmark = pytest.mark.e2e


@pytest.mark.skipif(BACKEND != "postgres", reason="a PostgreSQL restart; the SQLite run has no server to restart")
async def test_database_restart_gives_503s_then_recovers(
    private_pg: PrivatePostgres, start: Any, stack_env: dict[str, str]
) -> None:
    db = Database(make_settings(private_pg.url))
    await migrate(db)
    await db.dispose()
    stack_env["DATABASE_URL"] = private_pg.url
    api = await start("api")
    await start("worker")
    async with httpx.AsyncClient(base_url=api.url, timeout=15) as client:
        assert (await client.get("/api/commands")).status_code == 200
        fleet = (await client.get("/api/workers")).json()
        await asyncio.to_thread(private_pg.stop)
        began = time.monotonic()
        down = await client.get("/api/commands")
        answered_in = time.monotonic() - began
        assert down.status_code == 503 and down.json()["type"].endswith("database_unavailable")
        assert answered_in < 10, f"a request hung for {answered_in:.1f}s instead of failing fast"
        # The fleet is served from memory: it keeps answering, as of the last event the relay read.
        assert (await client.get("/api/workers")).json() == fleet
        assert (await client.get("/api/workers/summary")).status_code == 200
        health = await client.get("/api/health")
        assert health.status_code == 503 and health.json()["components"]["database"] == "down"
        # Not ready (take it out of the load balancer), but alive: restarting it would not bring the database back.
        assert (await client.get("/api/health/ready")).status_code == 503
        assert (await client.get("/api/health/live")).status_code == 200
        await asyncio.to_thread(private_pg.start)
        restarted = time.monotonic()
        while (await client.get("/api/commands")).status_code != 200:
            assert time.monotonic() - restarted < 20, "the API did not recover after the database returned"
            await asyncio.sleep(0.2)  # polling the recovery itself is what this test measures
        recovered_in = time.monotonic() - restarted
        print(f"\nrecovered {recovered_in:.1f}s after the database returned")
        assert (await client.get("/api/health")).json()["components"]["database"] == "up"


async def test_shutdown_under_load_closes_500_streams_and_releases_a_running_job(
    sandbox: Sandbox, start: Any, stack_env: dict[str, str], db_of: Database
) -> None:
    stack_env.update({"WORKER_METRICS_INTERVAL": "600", "LABS_REFRESH_ENABLED": "false", "CML_TIMEOUT": "30"})
    api = await start("api")
    worker = await start("worker")
    assert api.port is not None
    async with httpx.AsyncClient(base_url=api.url) as client, open_stream(api.url) as watch:
        await watch.next()
        while len((await client.get("/api/workers")).json()["items"]) < len(sandbox.instance_ids):
            await watch.until(lambda e: e.type == "worker.created")
        for instance_id in sandbox.instance_ids:
            sandbox.sim("PATCH", f"/hosts/{instance_id}/config", {"slow_seconds": 20})
        await client.post("/api/system/jobs/worker-metrics/run")
        started = await watch.wait_for(lambda e: e.type == "job.run.started" and e.data["data"]["trigger"] == "manual")

    streams = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", api.port) for _ in range(500)))
    for _, writer in streams:
        writer.write(b"GET /api/events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await asyncio.gather(*(reader.readuntil(b"event: connected") for reader, _ in streams))

    code, took = await asyncio.to_thread(worker.stop, signal.SIGTERM)
    assert code == 0 and took < 10, f"worker exit {code} after {took:.1f}s"
    async with db_of.session(write=False) as session:
        run = await session.get(JobRunRow, started.data["data"]["run_id"])
        now = await db_of.now(session)
    assert run is not None and (run.outcome != "running" or run.lease_expires_at <= now), "claim not released"

    code, took = await asyncio.to_thread(api.stop, signal.SIGTERM)
    told = await asyncio.gather(*(reader.read() for reader, _ in streams))
    assert code == 0 and took < 10, f"api exit {code} after {took:.1f}s"
    assert sum(b"event: shutdown" in body for body in told) == 500
    print(f"\napi stopped in {took:.1f}s with 500 open streams")
    assert "Traceback" not in api.output()
