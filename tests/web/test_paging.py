"""Every list the API returns is one envelope, `{items, total, limit, offset}`, paged with `?limit=&offset=`."""

from __future__ import annotations

from typing import Any

import httpx

from cml_cloud_manager.jobs.commands import enqueue
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.system.schemas import RunJob
from cml_cloud_manager.workers import service as workers
from cml_cloud_manager.workers.events import WorkerUpdated
from cml_cloud_manager.workers.schemas import RefreshWorkers

ENVELOPE = {"items", "total", "limit", "offset"}


def _schema(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


async def test_every_list_endpoint_answers_the_one_envelope(api: httpx.AsyncClient) -> None:
    document = (await api.get("/api/openapi.json")).json()
    lists = set()
    for path, operations in document["paths"].items():
        get = operations.get("get")
        if get is None or "application/json" not in get["responses"].get("200", {}).get("content", {}):
            continue
        schema = _schema(document, get["responses"]["200"]["content"]["application/json"]["schema"])
        assert schema.get("type") != "array", f"GET {path} answers a bare list; use web.paging.Page"
        if "items" not in schema.get("properties", {}):
            continue
        lists.add(path)
        assert set(schema["properties"]) == ENVELOPE, f"GET {path}: {sorted(schema['properties'])}"
        params = {p["name"] for p in get.get("parameters", []) if p["in"] == "query"}
        assert {"limit", "offset"} <= params, f"GET {path} pages with {sorted(params)}"
    # The lists known when this was written; a new one only adds to them.
    assert lists >= {
        "/api/workers",
        "/api/commands",
        "/api/workers/{worker_id}/labs",
        "/api/workers/{worker_id}/metrics",
        "/api/workers/{worker_id}/events",
        "/api/system/jobs",
        "/api/system/jobs/{name}/runs",
    }


async def test_commands_are_paged_newest_first_with_their_total(api: httpx.AsyncClient, db: Database) -> None:
    async with db.session() as session:
        row = workers.create_row(name="w1", aws_region="us-east-1", aws_instance_id="i-0abc", status="running")
        worker = await workers.add(session, row, reason="test")
    ids = []
    for _ in range(3):
        async with db.session() as session:
            ids.append((await enqueue(session, RefreshWorkers(worker_ids=[worker.id]), worker_id=worker.id)).id)
    async with db.session() as session:
        await enqueue(session, RunJob(job="housekeeping"))

    first = (await api.get("/api/commands", params={"worker_id": worker.id, "limit": 2})).json()
    assert set(first) == ENVELOPE and (first["total"], first["limit"], first["offset"]) == (3, 2, 0)
    assert [c["id"] for c in first["items"]] == [ids[2], ids[1]]
    rest = (await api.get("/api/commands", params={"worker_id": worker.id, "limit": 2, "offset": 2})).json()
    assert [c["id"] for c in rest["items"]] == [ids[0]] and rest["total"] == 3
    assert (await api.get("/api/commands")).json()["total"] == 4

    too_many = await api.get("/api/commands", params={"limit": 5000})
    assert too_many.status_code == 422 and too_many.json()["errors"][0]["field"] == "limit"


async def test_a_workers_metrics_and_events_page_the_same_way(api: httpx.AsyncClient, db: Database) -> None:
    async with db.session() as session:
        row = workers.create_row(name="w1", aws_region="us-east-1", aws_instance_id="i-0abc", status="running")
        worker = await workers.add(session, row, reason="test")
        for _ in range(2):
            await workers.touch(session, worker, WorkerUpdated.of(worker, tags={}))
    events = (await api.get(f"/api/workers/{worker.id}/events", params={"limit": 2})).json()
    assert events["total"] == 3 and [e["type"] for e in events["items"]] == ["worker.updated", "worker.updated"]
    oldest = (await api.get(f"/api/workers/{worker.id}/events", params={"offset": 2})).json()["items"]
    assert [e["type"] for e in oldest] == ["worker.created"]
    metrics = (await api.get(f"/api/workers/{worker.id}/metrics")).json()
    assert metrics == {"items": [], "total": 0, "limit": 1000, "offset": 0}
    labs = (await api.get(f"/api/workers/{worker.id}/labs")).json()
    assert labs == {"items": [], "total": 0, "limit": 100, "offset": 0}
