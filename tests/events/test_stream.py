"""SSE semantics over real HTTP: replay, reset, filters, slow clients."""

from __future__ import annotations

import httpx
from sqlalchemy import delete

from cml_cloud_manager.events import outbox
from cml_cloud_manager.events.relay import Client
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import EventRow

from ..sse import open_stream


async def emit(db: Database, n: int, *, worker_id: str | None = None, type: str = "test.event") -> None:
    async with db.session() as session:
        for i in range(n):
            await outbox.append(session, type, {"i": i}, worker_id=worker_id)


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
        await emit(db, 1, worker_id="w1", type="worker.status.updated")
        await emit(db, 1, worker_id="w2", type="lab.state.changed")
        await emit(db, 1, worker_id="w3", type="worker.metrics.updated")
        event = await stream.next()
        assert (event.data["subject"], event.type) == ("w3", "worker.metrics.updated")


def test_slow_client_is_closed_not_grown() -> None:
    client = Client(worker_ids=None, event_types=None, limit=10)
    accepted = [client.push(b"x") for _ in range(25)]
    assert accepted.count(True) == 10
    assert client.closed and client.close_reason.startswith("too slow")
    assert len(client.frames) == 10
