"""`GET /api/workers`: pages, totals and filters, straight from the database."""

from __future__ import annotations

import httpx

from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.workers import service as workers
from cml_cloud_manager.workers.schemas import WorkerOut


async def test_pages_carry_the_total_of_what_matches(api: httpx.AsyncClient, db: Database) -> None:
    async with db.session() as session:
        for index in range(7):
            row = workers.create_row(
                name=f"w{index}",
                aws_region="us-east-1" if index < 5 else "eu-west-1",
                aws_instance_id=f"i-{index:017x}",
                status="running" if index % 2 else "stopped",
                tags={"team": "net"},
            )
            await workers.add(session, row, reason="test")
    page = (await api.get("/api/workers", params={"limit": 3, "offset": 2})).json()
    assert [w["name"] for w in page["items"]] == ["w2", "w3", "w4"]
    assert (page["total"], page["limit"], page["offset"]) == (7, 3, 2)
    assert set(page["items"][0]) == set(WorkerOut.model_fields)
    assert page["items"][0]["tags"] == {"team": "net"}

    running_eu = (await api.get("/api/workers", params={"region": "eu-west-1", "status": "running"})).json()
    assert [w["name"] for w in running_eu["items"]] == ["w5"] and running_eu["total"] == 1

    past_the_end = (await api.get("/api/workers", params={"offset": 50})).json()
    assert past_the_end["items"] == [] and past_the_end["total"] == 7
    nothing = (await api.get("/api/workers", params={"status": "failed"})).json()
    assert nothing == {"items": [], "total": 0, "limit": 100, "offset": 0}


async def test_a_listed_worker_reads_the_same_as_the_worker_itself(api: httpx.AsyncClient, db: Database) -> None:
    async with db.session() as session:
        row = await workers.add(
            session,
            workers.create_row(name="solo", aws_region="us-east-1", aws_instance_id="i-0abc", status="running"),
            reason="test",
        )
    listed = (await api.get("/api/workers")).json()["items"]
    assert listed == [(await api.get(f"/api/workers/{row.id}")).json()]
