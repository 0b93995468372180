"""Bad input gets a 4xx problem a person can act on, and changes nothing."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import CommandRow, SystemSettingRow
from cml_cloud_manager.workers import service as workers


async def count(db: Database, model: type) -> int:
    async with db.session(write=False) as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def add_worker(db: Database, status: str) -> str:
    async with db.session() as session:
        row = await workers.add(
            session,
            workers.create_row(name="w1", aws_region="us-east-1", aws_instance_id="i-0abc", status=status),
            reason="test",
        )
        return row.id


async def test_malformed_json_is_400_and_stores_nothing(api: httpx.AsyncClient, db: Database) -> None:
    response = await api.put(
        "/api/system/settings", content=b'{"values": {', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert "not valid JSON" in response.json()["detail"]
    assert await count(db, SystemSettingRow) == 0


async def test_unknown_ids_are_404(api: httpx.AsyncClient) -> None:
    for path in ("/api/workers/nope", "/api/commands/nope"):
        response = await api.get(path)
        assert response.status_code == 404
        assert "nope" in response.json()["detail"]
    response = await api.post("/api/system/jobs/nope/run")
    assert response.status_code == 404 and "housekeeping" in response.json()["detail"]
    response = await api.get("/api/no/such/thing")
    assert response.status_code == 404 and response.json()["detail"] == "No such endpoint: GET /api/no/such/thing"


async def test_illegal_transition_is_409_and_queues_nothing(api: httpx.AsyncClient, db: Database) -> None:
    worker_id = await add_worker(db, "running")
    response = await api.post(f"/api/workers/{worker_id}/start")
    assert response.status_code == 409
    assert response.json()["detail"] == "Cannot start worker 'w1' while it is running: it must be stopped."
    assert await count(db, CommandRow) == 0
    assert (await api.get(f"/api/workers/{worker_id}")).json()["status"] == "running"


async def test_legal_action_is_queued_as_a_command(api: httpx.AsyncClient, db: Database) -> None:
    worker_id = await add_worker(db, "running")
    response = await api.post(f"/api/workers/{worker_id}/stop")
    assert response.status_code == 202
    command = (await api.get(response.headers["location"])).json()
    assert (command["type"], command["status"], command["worker_id"]) == ("worker.stop", "queued", worker_id)


async def test_bad_query_values_are_422_with_the_field(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/workers", params={"status": "asleep", "limit": 0})
    assert response.status_code == 422
    fields = {error["field"] for error in response.json()["errors"]}
    assert fields == {"status", "limit"}


async def test_bad_last_event_id_is_400(api: httpx.AsyncClient) -> None:
    for bad in ("abc", "-3"):
        response = await api.get("/api/events/stream", headers={"Last-Event-ID": bad})
        assert response.status_code == 400
        assert "Last-Event-ID" in response.json()["detail"]
