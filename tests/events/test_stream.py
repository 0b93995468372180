"""SSE semantics over real HTTP: replay, reset, filters, heartbeats, slow clients."""

from __future__ import annotations

import asyncio
import logging

import httpx
from sqlalchemy import delete

from cml_cloud_manager.events import outbox
from cml_cloud_manager.events.relay import Client
from cml_cloud_manager.labs.events import LabStateChanged
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import EventRow
from cml_cloud_manager.workers.events import MetricsChanges, WorkerMetricsUpdated, WorkerStatusUpdated

from ..conftest import make_settings, serve_api
from ..sockets import describe, stalled_stream, wait_gone
from ..sse import open_stream
from .probe import Probe


async def emit(db: Database, n: int, *, worker_id: str | None = None) -> None:
    async with db.session() as session:
        for i in range(n):
            await outbox.append(session, Probe(i=i), type="test.event", worker_id=worker_id)


async def test_replay_after_last_event_id_in_order(api: httpx.AsyncClient, db: Database) -> None:
    await emit(db, 5)
    async with open_stream(str(api.base_url), headers={"Last-Event-ID": "2"}) as stream:
        assert (await stream.next()).event == "connected"
        events = [await stream.next() for _ in range(3)]
        assert [e.id for e in events] == [3, 4, 5]
        assert events[0].data["specversion"] == "1.0" and events[0].data["sequence"] == 3
        await emit(db, 1)
        assert (await stream.next()).id == 6


async def test_pruned_history_gives_reset_and_snapshot(api: httpx.AsyncClient, db: Database) -> None:
    await emit(db, 5)
    async with db.session() as session:
        await session.execute(delete(EventRow).where(EventRow.seq <= 3))
    async with open_stream(str(api.base_url), headers={"Last-Event-ID": "1"}) as stream:
        await stream.next()
        assert (await stream.next()).event == "reset"
        assert (await stream.next()).event == "snapshot"


async def test_id_from_the_future_gives_reset(api: httpx.AsyncClient, db: Database) -> None:
    async with open_stream(str(api.base_url), params={"lastEventId": "999"}) as stream:
        await stream.next()
        assert (await stream.next()).event == "reset"


async def test_filters_by_worker_and_type(api: httpx.AsyncClient, db: Database) -> None:
    params = {"worker_ids": "w2,w3", "event_types": "worker.*"}
    async with open_stream(str(api.base_url), params=params) as stream:
        await stream.next()
        assert (await stream.next()).event == "snapshot"
        status = WorkerStatusUpdated(name="1", previous="stopped", status="pending", reason="")
        lab = LabStateChanged(lab_id="l", cml_lab_id="c", title="t", previous="STOPPED", state="STARTED")
        metrics = WorkerMetricsUpdated(name="3", changes=MetricsChanges(labs_count=1))
        async with db.session() as session:
            await outbox.append(session, status, worker_id="w1")
            await outbox.append(session, lab, worker_id="w2")
            await outbox.append(session, metrics, worker_id="w3")
        event = await stream.next()
        assert (event.data["subject"], event.type) == ("w3", "worker.metrics.updated")


def test_slow_client_is_closed_not_grown() -> None:
    client = Client(worker_ids=None, event_types=None, limit=10)
    accepted = [client.push(b"x") for _ in range(25)]
    assert accepted.count(True) == 10
    assert client.closed and client.close_reason.startswith("too slow")
    assert len(client.frames) == 10


async def test_quiet_stream_gets_heartbeats(database_url: str, db: Database) -> None:
    settings = make_settings(database_url, sse_heartbeat_seconds=0.2)
    async with serve_api(settings) as api, api.stream("GET", "/api/events/stream") as response:
        beats: list[float] = []
        async with asyncio.timeout(5):
            async for line in response.aiter_lines():
                if line == ": heartbeat":
                    beats.append(asyncio.get_running_loop().time())
                    if len(beats) == 3:
                        break
    assert beats[2] - beats[1] >= 0.15, "heartbeats came faster than the configured interval"


class CutOffs(logging.Handler):
    """Sets `seen` when the API logs that it cut off a client: the one observable moment of a cut-off."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("cutting off SSE client"):
            self.seen.set()


async def test_client_that_stops_reading_is_cut_off_after_the_write_timeout(database_url: str, db: Database) -> None:
    # Buffers large enough that only the write watchdog, not the "too slow" buffer limit, can drop the client.
    # The server hands one large write to the socket at once; the write after it (a heartbeat) is the one that
    # waits for the client to read.
    settings = make_settings(
        database_url,
        sse_write_timeout_seconds=0.5,
        sse_heartbeat_seconds=0.2,
        sse_client_queue_size=10_000,
        sse_client_buffer_bytes=64 << 20,
    )
    cut_offs = CutOffs()
    sse_log = logging.getLogger("cml_cloud_manager.events.sse")
    sse_log.addHandler(cut_offs)
    sse_log.setLevel(logging.INFO)
    async with serve_api(settings) as api:
        port = api.base_url.port or 0
        stalled = await stalled_stream(port)  # it never reads again
        client_port = stalled.getsockname()[1]
        try:
            assert (await api.get("/api/health")).json()["components"]["sse_clients"] == 1
            async with db.session() as session:
                for i in range(400):  # ~8 MB: more than the kernel buffers between the API and the client
                    await outbox.append(session, Probe(i=i, pad="x" * 20_000), type="test.bulk")
            await asyncio.wait_for(cut_offs.seen.wait(), 10)
            assert (await api.get("/api/health")).json()["components"]["sse_clients"] == 0
            # Cut off means the connection is gone, not waiting for the client to drain megabytes it never reads.
            left = await wait_gone(port, {client_port})
            assert not left, f"after the cut-off: {describe(left)}"
        finally:
            sse_log.removeHandler(cut_offs)
            stalled.close()
