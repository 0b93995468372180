"""A request leaves no reference cycles on the server side: under load, cyclic garbage means collector pauses
of 20-30 ms every few seconds (`make bench`)."""

from __future__ import annotations

import gc
from collections import Counter

import httpx

REQUESTS = 40
# The client in this process (httpx, httpcore, anyio) leaves cycles of its own; only the server's count.
SERVER_SIDE = ("uvicorn", "starlette", "fastapi", "contextlib", "cml_cloud_manager", "sqlalchemy", "asyncpg")


async def test_requests_leave_nothing_for_the_cycle_collector(api: httpx.AsyncClient) -> None:
    await api.get("/api/workers")  # first use: pool connections, caches
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # keep what a collection finds in gc.garbage, to say what it was
    try:
        for _ in range(REQUESTS):
            assert (await api.get("/api/workers")).status_code == 200
        gc.collect()
        found = Counter(
            f"{type(thing).__module__}.{type(thing).__qualname__}"
            for thing in gc.garbage
            if type(thing).__module__.startswith(SERVER_SIDE)
        )
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert not found, f"server-side objects in reference cycles after {REQUESTS} requests: {found.most_common(5)}"
