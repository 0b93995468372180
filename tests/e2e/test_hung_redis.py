"""A Redis that hangs or refuses connections holds up no request: writes answer at their usual speed, commands
still run, health answers within its deadline saying `degraded`, and liveness does not notice.

Real `api` and `worker` processes; Redis is either a `redis-server` of the test's own stopped with SIGSTOP, or
a listener that accepts connections, reads and never answers.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from .faults import PrivateRedis, SilentListener

pytestmark = pytest.mark.e2e

# Redis stays hung this long at most (the test continues it sooner once it has measured): far beyond BOUND.
HANG_SECONDS = 30.0
# Any one request while Redis hangs: far below the hang, generous for a loaded 2-core machine.
BOUND = 2.0
# The median write while Redis refuses connections (0.011 s with Redis up, 0.7 s before the fix).
REFUSED_WRITE_MEDIAN = 0.25


async def timed(call: Awaitable[httpx.Response]) -> tuple[float, httpx.Response | None]:
    """(seconds, response); None when the request gave up after the client's timeout (HANG_SECONDS)."""
    began = time.monotonic()
    try:
        response: httpx.Response | None = await call
    except httpx.TimeoutException:
        response = None
    return time.monotonic() - began, response


async def write(client: httpx.AsyncClient) -> tuple[float, httpx.Response | None]:
    """A request that stores a command and its event: each commit used to publish to Redis before answering."""
    return await timed(client.post("/api/system/jobs/housekeeping/run"))


async def measure_while_hung(api: Any, worker: Any) -> dict[str, Any]:
    """Every kind of request once or more, each timed; nothing asserted yet, so a failure shows all figures."""
    seen: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=api.url, timeout=HANG_SECONDS) as client:
        seen["writes"] = [await write(client) for _ in range(5)]
        accepted = next((r for _, r in seen["writes"] if r is not None and r.status_code == 202), None)
        if accepted is not None:
            command_id = accepted.json()["command_id"]
            began = time.monotonic()
            status = "queued"
            while status not in ("succeeded", "failed") and time.monotonic() - began < HANG_SECONDS:
                status = (await client.get(f"/api/commands/{command_id}")).json()["status"]
                await asyncio.sleep(0.1)
            seen["command"] = (time.monotonic() - began, status)
        seen["health"] = [await timed(client.get("/api/health")) for _ in range(3)]
        seen["ready"] = await timed(client.get("/api/health/ready"))
        seen["live"] = await timed(client.get("/api/health/live"))
        worker_url = f"http://127.0.0.1:{worker.health_port}"
        seen["worker_live"] = await timed(client.get(f"{worker_url}/health/live"))
        seen["worker_ready"] = await timed(client.get(f"{worker_url}/health/ready"))
    return seen


def report(label: str, seen: dict[str, Any]) -> None:
    def fmt(pair: tuple[float, httpx.Response | None]) -> str:
        seconds, response = pair
        return f"{seconds:.3f}s/{response.status_code if response is not None else 'timeout'}"

    print(f"\n[{label}] writes: {', '.join(fmt(w) for w in seen['writes'])}")
    if "command" in seen:
        print(f"[{label}] command queued during the hang: {seen['command'][1]} after {seen['command'][0]:.2f}s")
    print(f"[{label}] /api/health: {', '.join(fmt(h) for h in seen['health'])}")
    for key in ("ready", "live", "worker_live", "worker_ready"):
        print(f"[{label}] {key}: {fmt(seen[key])}")


def assert_unaffected(seen: dict[str, Any]) -> None:
    for seconds, response in seen["writes"]:
        assert response is not None and response.status_code == 202 and seconds < BOUND, seen["writes"]
    assert seen["command"][1] == "succeeded" and seen["command"][0] < 10, seen["command"]
    for seconds, response in seen["health"]:
        assert response is not None and seconds < BOUND, seen["health"]
        body = response.json()
        assert response.status_code == 200 and body["status"] == "degraded", body
        assert body["components"]["database"] == "up" and body["components"]["redis"] == "down", body
        assert "redis" in body["reasons"], body
    seconds, ready = seen["ready"]
    assert ready is not None and ready.status_code == 200 and seconds < BOUND, seen["ready"]
    assert ready.json()["status"] == "degraded" and "redis" in ready.json()["reasons"], ready.json()
    for key in ("live", "worker_live", "worker_ready"):
        seconds, response = seen[key]
        assert response is not None and response.status_code == 200 and seconds < BOUND, (key, seen[key])


async def test_a_stopped_redis_holds_up_no_request(
    start: Any, stack_env: dict[str, str], private_redis: PrivateRedis
) -> None:
    stack_env["REDIS_URL"] = private_redis.url
    api = await start("api")
    worker = await start("worker")
    async with httpx.AsyncClient(base_url=api.url) as client:
        assert (await write(client))[1] is not None  # pooled connections to Redis exist before it hangs
        assert (await client.get("/api/health")).json()["components"]["redis"] == "up"
    private_redis.pause()
    resume = asyncio.get_running_loop().call_later(HANG_SECONDS, private_redis.resume)
    try:
        seen = await measure_while_hung(api, worker)
    finally:
        resume.cancel()
        private_redis.resume()
    report("redis SIGSTOPped", seen)
    assert_unaffected(seen)
    # Once Redis answers again, health says so by itself.
    async with httpx.AsyncClient(base_url=api.url) as client:
        await until(lambda: client.get("/api/health"), lambda r: r.json()["components"]["redis"] == "up")


async def test_a_redis_that_never_answers_holds_up_no_request(
    start: Any, stack_env: dict[str, str], silent_redis: SilentListener
) -> None:
    stack_env["REDIS_URL"] = silent_redis.url
    api = await start("api")
    worker = await start("worker")
    seen = await measure_while_hung(api, worker)
    report("redis never answers", seen)
    assert_unaffected(seen)
    assert silent_redis.received, "the processes never even tried Redis"


async def test_writes_cost_no_more_while_redis_refuses_connections(
    start: Any, stack_env: dict[str, str], private_redis: PrivateRedis
) -> None:
    stack_env["REDIS_URL"] = private_redis.url
    api = await start("api")
    await start("worker")
    async with httpx.AsyncClient(base_url=api.url, timeout=HANG_SECONDS) as client:
        await write(client)
        up = [(await write(client))[0] for _ in range(10)]
        private_redis.kill()
        refused = [(await write(client))[0] for _ in range(10)]
        health_seconds, health = await timed(client.get("/api/health"))
    print(
        f"\nwrite median with Redis up {statistics.median(up):.3f}s, refusing {statistics.median(refused):.3f}s "
        f"(max {max(refused):.3f}s); /api/health {health_seconds:.3f}s"
    )
    assert statistics.median(refused) < REFUSED_WRITE_MEDIAN, refused
    assert health is not None and health_seconds < BOUND
    assert health.json()["status"] == "degraded" and health.json()["components"]["redis"] == "down"


async def until(
    call: Callable[[], Awaitable[httpx.Response]], done: Callable[[httpx.Response], bool], timeout: float = 10
) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = await call()
        if done(response):
            return response
        assert time.monotonic() < deadline, response.text
        await asyncio.sleep(0.2)
