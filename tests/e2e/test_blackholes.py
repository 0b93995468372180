"""Network blackholes: PostgreSQL or Redis behind a proxy that accepts connections and then moves no byte, as
behind a dropped route, so connections hang instead of being refused. While it lasts, no request waits past
its bound; once it lifts, every process recovers by itself and the SSE readers match the outbox exactly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from cml_cloud_manager.storage.db import Database

from ..conftest import BACKEND
from .faults import Blackhole
from .processes import Proc
from .recovery import Reader, match_outbox, poll, readers_on, recovered

pytestmark = pytest.mark.e2e

# The tests' DATABASE_TIMEOUT_SECONDS: how long connecting, or one statement, may wait for PostgreSQL.
DATABASE_TIMEOUT = 3.0
# A request that needs the database, while it is blackholed: answered (503) within this long (a pooled connection's
# ping, then a new connection, may each take the timeout).
DATABASE_BOUND = 2 * DATABASE_TIMEOUT + 2.0
# Any request that does not need the database (health, liveness, anything while Redis is blackholed).
BOUND = 2.0
# How long the blackhole lasts at least: past LEASE_SECONDS (3 s in these tests), so leases lapse meanwhile.
HOLD = 8.0


async def timed(call: Awaitable[httpx.Response]) -> tuple[float, int | str]:
    began = time.monotonic()
    try:
        status: int | str = (await call).status_code
    except httpx.TimeoutException:
        status = "timeout"
    return round(time.monotonic() - began, 2), status


async def completed_runs(readers: list[Reader], count: int, timeout: float = 30) -> None:
    start = [sum(e.type == "job.run.completed" for e in r.events) for r in readers]

    async def enough() -> bool | None:
        seen = [sum(e.type == "job.run.completed" for e in r.events) for r in readers]
        return True if all(now - before >= count for now, before in zip(seen, start, strict=True)) else None

    await poll(f"{count} job runs completed on every reader", enough, timeout)


async def probe_all(apis: list[Proc], workers: list[Proc]) -> dict[str, list[tuple[float, int | str]]]:
    """Every kind of request, all at once, each timed (a client timeout of 120 s: far beyond any bound)."""
    async with httpx.AsyncClient(timeout=120) as client:
        calls: dict[str, Callable[[], Awaitable[httpx.Response]]] = {}
        for i, api in enumerate(apis):
            calls[f"api{i} read"] = partial(client.get, f"{api.url}/api/commands")
            calls[f"api{i} fleet"] = partial(client.get, f"{api.url}/api/workers")  # from memory
            calls[f"api{i} write"] = partial(client.post, f"{api.url}/api/system/jobs/housekeeping/run")
            calls[f"api{i} health"] = partial(client.get, f"{api.url}/api/health")
            calls[f"api{i} ready"] = partial(client.get, f"{api.url}/api/health/ready")
            calls[f"api{i} live"] = partial(client.get, f"{api.url}/api/health/live")
        for i, worker in enumerate(workers):
            base = f"http://127.0.0.1:{worker.health_port}"
            calls[f"worker{i} live"] = partial(client.get, f"{base}/health/live")
            calls[f"worker{i} ready"] = partial(client.get, f"{base}/health/ready")
        rounds: dict[str, list[tuple[float, int | str]]] = {name: [] for name in calls}
        for _ in range(2):  # the second round meets what the first left behind (hung pooled connections)
            results = await asyncio.gather(*(timed(call()) for call in calls.values()))
            for name, result in zip(calls, results, strict=True):
                rounds[name].append(result)
    return rounds


@pytest.mark.skipif(BACKEND != "postgres", reason="a blackholed PostgreSQL; the SQLite run has no server")
async def test_postgres_blackhole_answers_within_bounds_and_recovers(
    start: Any, stack_env: dict[str, str], blackhole: Callable[[int], Blackhole], db_of: Database
) -> None:
    url = make_url(stack_env["DATABASE_URL"])
    proxy = blackhole(url.port or 5432)
    stack_env["DATABASE_URL"] = url.set(port=proxy.port).render_as_string(hide_password=False)
    stack_env["DATABASE_TIMEOUT_SECONDS"] = str(DATABASE_TIMEOUT)
    apis = [await start("api"), await start("api")]
    workers = [await start("worker"), await start("worker")]
    async with readers_on(*(api.url for api in apis)) as readers:
        await completed_runs(readers, 2)
        proxy.on()
        began = time.monotonic()
        seen = await probe_all(apis, workers)
        async with httpx.AsyncClient(timeout=BOUND) as client:
            # A worker is ready while its leases hold; once no heartbeat reached the database for a lease period,
            # it says so (its probes answer from memory, in time).
            for worker in workers:

                async def unready(worker: Proc = worker) -> bool | None:
                    ready = await client.get(f"http://127.0.0.1:{worker.health_port}/health/ready")
                    return True if ready.status_code == 503 and "database" in ready.json()["reasons"] else None

                await poll("a blackholed worker reported not ready", unready, HOLD)
        await asyncio.sleep(max(0.0, HOLD - (time.monotonic() - began)))  # the fault's length, not a wait for it
        proxy.lift()
        print(f"\nPostgreSQL blackholed {time.monotonic() - began:.1f}s ({proxy.held_bytes} bytes held):")
        for name, results in seen.items():
            print(f"  {name}: {results}")
        took = await recovered(apis, workers, redis=bool(stack_env["REDIS_URL"]))
        print(f"every process recovered {took:.2f}s after the blackhole lifted")
        await completed_runs(readers, 2)
        compared = await match_outbox(db_of, readers)
        print(f"readers matched the outbox on {compared} events")
    for name, results in seen.items():
        for seconds, status in results:
            if name.endswith(("read", "write")):
                assert status == 503 and seconds < DATABASE_BOUND, (name, results)
            elif name.endswith("fleet"):  # answered from memory, as of the last event the relay read
                assert status == 200 and seconds < BOUND, (name, results)
            elif name.startswith("api") and name.endswith(("health", "ready")):
                assert status == 503 and seconds < BOUND, (name, results)
            elif name.endswith("ready"):  # a worker: see above
                assert status in (200, 503) and seconds < BOUND, (name, results)
            else:  # liveness never asks the database
                assert status == 200 and seconds < BOUND, (name, results)
    for proc in apis + workers:
        assert proc.popen.poll() is None and "Traceback" not in proc.output(), proc.output()[-4000:]


async def test_redis_blackhole_holds_up_no_request_and_recovers(
    start: Any, stack_env: dict[str, str], blackhole: Callable[[int], Blackhole], redis_url: str, db_of: Database
) -> None:
    proxy = blackhole(make_url(redis_url).port or 6379)
    stack_env["REDIS_URL"] = f"redis://127.0.0.1:{proxy.port}/0"
    # Polls so rare that, with Redis up, only its wake-ups bring events to readers and commands to the worker in
    # time: so the end of the test shows that both subscriptions came back after the blackhole, not just polling.
    stack_env.update({"RELAY_SAFETY_POLL_INTERVAL": "300", "COMMAND_POLL_INTERVAL": "300"})
    api = await start("api")
    worker = await start("worker")
    async with readers_on(api.url) as readers, httpx.AsyncClient(base_url=api.url, timeout=120) as client:
        await completed_runs(readers, 2)
        assert (await client.get("/api/health")).json()["components"]["redis"] == "up"
        proxy.on()
        began = time.monotonic()
        writes = [await timed(client.post("/api/system/jobs/housekeeping/run")) for _ in range(5)]
        health = [await timed(client.get("/api/health")) for _ in range(3)]
        body = (await client.get("/api/health")).json()
        # Events still reach the readers (the relay polls), and commands still run (the worker polls).
        await completed_runs(readers, 2)
        await asyncio.sleep(max(0.0, HOLD - (time.monotonic() - began)))  # the fault's length, not a wait for it
        proxy.lift()
        print(f"\nRedis blackholed {time.monotonic() - began:.1f}s: writes {writes}, health {health}")

        async def redis_up() -> bool | None:
            return True if (await client.get("/api/health")).json()["components"]["redis"] == "up" else None

        await poll("Redis seen up again", redis_up, 15)
        took = await recovered([api], [worker], redis=True, timeout=10)
        compared = await match_outbox(db_of, readers, timeout=10)
        print(f"every process recovered {took:.2f}s after; readers matched the outbox on {compared} events")
    for seconds, status in writes:
        assert status == 202 and seconds < BOUND, writes
    for seconds, status in health:
        assert status == 200 and seconds < BOUND, health
    assert body["status"] == "degraded" and body["components"]["redis"] == "down", body
    for proc in (api, worker):
        assert proc.popen.poll() is None and "Traceback" not in proc.output(), proc.output()[-4000:]
