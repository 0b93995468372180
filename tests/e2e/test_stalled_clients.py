"""SSE clients that stop reading, on real sockets against a real `api` process: a dropped client's connection is
gone (socket, kernel buffers, descriptor), and stalled clients do not hold up SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import httpx
import pytest

from cml_cloud_manager.events import outbox
from cml_cloud_manager.storage.db import Database

from ..events.probe import Probe
from ..sockets import connections_held, describe, server_sockets, settled, socket_inodes, stalled_stream, wait_gone
from ..sse import open_stream

pytestmark = pytest.mark.e2e

STALLED = 10


async def emit_bulk(db: Database, count: int = 400, pad: int = 20_000) -> None:
    """~8 MB of events: more than the kernel buffers between the API and a client that never reads."""
    async with db.session() as session:
        for i in range(count):
            await outbox.append(session, Probe(i=i, pad="x" * pad), type="test.bulk")


async def sse_metrics(client: httpx.AsyncClient) -> dict[str, float]:
    samples = dict(line.split() for line in (await client.get("/metrics")).text.splitlines() if line[0] != "#")
    return {name: float(samples[name]) for name in ("sse_clients_active", "sse_clients_dropped_total")}


async def read_snapshot(url: str) -> None:
    async with open_stream(url) as stream:
        await stream.wait_for(lambda e: e.event == "snapshot")


async def test_dropped_clients_lose_their_connection_and_buffers(
    start: Any, stack_env: dict[str, str], db_of: Database
) -> None:
    stack_env.update({"HOUSEKEEPING_ENABLED": "false"})  # default SSE buffers: clients are dropped as "too slow"
    api = await start("api")
    assert api.port is not None
    pid = api.popen.pid
    # The baseline is taken after as many ordinary streams came and went, so pools have the size the test needs.
    async with asyncio.TaskGroup() as group:
        for _ in range(STALLED):
            group.create_task(read_snapshot(api.url))
    assert await settled(lambda: connections_held(pid, api.port), lambda held: held == 0, 10) == 0
    baseline = len(socket_inodes(pid))

    stalled = [await stalled_stream(api.port) for _ in range(STALLED)]
    ports = {sock.getsockname()[1] for sock in stalled}
    try:
        await emit_bulk(db_of)
        async with httpx.AsyncClient(base_url=api.url) as client:
            metrics: dict[str, float] = await settled(
                lambda: sse_metrics(client), lambda m: m["sse_clients_dropped_total"] >= STALLED, 20
            )
        assert metrics == {"sse_clients_active": 0, "sse_clients_dropped_total": STALLED}
        left = await wait_gone(api.port, ports)
        held = await settled(lambda: connections_held(pid, api.port), lambda held: held == 0)
        sockets = len(socket_inodes(pid))
        print(f"\n{STALLED} dropped clients: {describe(left)}; socket descriptors {sockets} (baseline {baseline})")
        assert not left, f"dropped clients still connected: {describe(left)}"
        assert held == 0 and sockets == baseline, f"{held} connections held, {sockets} sockets (baseline {baseline})"
    finally:
        for sock in stalled:
            sock.close()


async def test_sigterm_does_not_wait_for_clients_that_stopped_reading(
    start: Any, stack_env: dict[str, str], db_of: Database
) -> None:
    # Buffers and a write timeout large enough that no client is dropped before the signal: at SIGTERM every
    # stalled client's socket is full, so the write of its shutdown event blocks (this took the whole grace
    # period, 10.5 s, before such writes were cut off).
    grace = 10
    stack_env.update(
        {
            "HOUSEKEEPING_ENABLED": "false",
            "SHUTDOWN_GRACE_SECONDS": str(grace),
            "SSE_WRITE_TIMEOUT_SECONDS": "60",
            "SSE_CLIENT_QUEUE_SIZE": "10000",
            "SSE_CLIENT_BUFFER_BYTES": str(64 << 20),
        }
    )
    api = await start("api")
    assert api.port is not None
    stalled = [await stalled_stream(api.port) for _ in range(STALLED)]
    ports = {sock.getsockname()[1] for sock in stalled}
    try:
        async with open_stream(api.url) as healthy:
            await healthy.wait_for(lambda e: e.event == "snapshot")
            await emit_bulk(db_of)
            await healthy.wait_for(lambda e: e.type == "test.bulk" and e.data["data"]["i"] == 399, timeout=30)
            # Every stalled client's socket is full: its write is blocked.
            queued = await settled(
                lambda: [s for s in server_sockets(api.port, ports) if s.send_queue > 1 << 20],
                lambda full: len(full) == STALLED,
                10,
            )
            assert len(queued) == STALLED, describe(queued)
            code, took = await asyncio.to_thread(api.stop, signal.SIGTERM, grace + 5)
            told = await healthy.wait_for(lambda e: e.event == "shutdown", timeout=5)
        left = await wait_gone(api.port, ports)
        print(
            f"\nSIGTERM with {STALLED} stalled clients ({describe(queued)}): exit {code} after {took:.2f}s "
            f"(SHUTDOWN_GRACE_SECONDS={grace}); left behind: {describe(left)}"
        )
        assert code == 0 and took < 3, f"exit {code} after {took:.2f}s, grace {grace}s"
        assert told.data["reconnect"] is True, "the client that reads was not told"
        assert not left, f"sockets outlived the process: {describe(left)}"
    finally:
        for sock in stalled:
            sock.close()
