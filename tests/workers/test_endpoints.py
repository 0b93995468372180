"""Worker endpoints over HTTP: refresh deduplicated then throttled, create validated before anything is stored,
and idle detection's per-worker switch and snooze, which the idle rules then honour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import func, select

from cml_cloud_manager.activity.tasks import should_stop
from cml_cloud_manager.config import Settings
from cml_cloud_manager.jobs.commands import enqueue
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import CommandRow, EventRow, WorkerRow
from cml_cloud_manager.workers import service as workers
from cml_cloud_manager.workers.schemas import RefreshWorkers


async def count(db: Database, model: type) -> int:
    async with db.session(write=False) as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def add_worker(db: Database, status: str, **fields: object) -> str:
    async with db.session() as session:
        row = await workers.add(
            session,
            workers.create_row(name="w1", aws_region="us-east-1", aws_instance_id="i-0abc", status=status, **fields),
            reason="test",
        )
        return row.id


async def test_refresh_is_deduplicated_then_throttled_with_retry_after(api: httpx.AsyncClient, db: Database) -> None:
    worker_id = await add_worker(db, "running")
    first = await api.post(f"/api/workers/{worker_id}/refresh")
    second = await api.post(f"/api/workers/{worker_id}/refresh")
    assert first.status_code == second.status_code == 202
    assert first.json()["command_id"] == second.json()["command_id"]
    assert await count(db, CommandRow) == 1
    async with db.session() as session:
        command = await session.get(CommandRow, first.json()["command_id"])
        assert command is not None
        command.status, command.finished_at = "succeeded", datetime.now(UTC)
    throttled = await api.post(f"/api/workers/{worker_id}/refresh")
    assert throttled.status_code == 429 and "try again in" in throttled.json()["detail"]
    # Retry-After says when, in whole seconds, as the message does.
    wait = int(throttled.headers["retry-after"])
    assert 1 <= wait <= 10 and f"try again in {wait}s" in throttled.json()["detail"]


async def test_a_scheduled_metrics_run_does_not_count_as_a_manual_refresh(api: httpx.AsyncClient, db: Database) -> None:
    worker_id = await add_worker(db, "running")
    async with db.session() as session:
        # Just observed by worker-metrics (or by a refresh an import queued): neither is a person's refresh.
        (await workers.get(session, worker_id)).metrics_at = datetime.now(UTC)
        await enqueue(session, RefreshWorkers(worker_ids=[worker_id]), worker_id=worker_id)
        imported = await session.scalar(select(CommandRow))
        assert imported is not None
        imported.status, imported.finished_at = "succeeded", datetime.now(UTC)
    response = await api.post(f"/api/workers/{worker_id}/refresh")
    assert response.status_code == 202, response.text


async def test_create_validates_before_storing(api: httpx.AsyncClient, db: Database) -> None:
    response = await api.post("/api/workers", json={"name": "x"})
    assert response.status_code == 400 and "CML_AMI_ID" in response.json()["detail"]
    response = await api.post("/api/workers", json={"name": "x", "ami_id": "ami-0123456789abcdef0", "region": "mars-1"})
    assert response.status_code == 400 and "mars-1" in response.json()["detail"]
    response = await api.post("/api/workers", json={"name": "x", "ami_id": "not-an-ami"})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "ami_id"
    # A tag EC2 would refuse minutes later, after a worker record was made for it: refused by the command's
    # payload before anything is stored.
    body = {"name": "x", "ami_id": "ami-0123456789abcdef0", "tags": {"aws:owner": "me"}}
    response = await api.post("/api/workers", json=body)
    assert response.status_code == 422 and response.json()["type"].endswith(":invalid_command_payload")
    assert response.json()["detail"] == (
        "Cannot queue worker.create: tags.aws:owner: tag key 'aws:owner' is not allowed (1-128 characters, "
        "not starting with 'aws:')"
    )
    assert await count(db, WorkerRow) == 0
    assert await count(db, CommandRow) == 0 and await count(db, EventRow) == 0


async def test_tags_ec2_would_refuse_are_refused_naming_each(api: httpx.AsyncClient, db: Database) -> None:
    worker_id = await add_worker(db, "running")
    body = {"set": {"team": "x" * 257, "": "empty"}, "remove": ["aws:cloudformation:stack-id"]}
    response = await api.put(f"/api/workers/{worker_id}/tags", json=body)
    assert response.status_code == 422 and response.json()["type"].endswith(":invalid_command_payload")
    assert [error["field"] for error in response.json()["errors"]] == ["set.team", "set.", "remove.0"]
    assert response.json()["errors"][0]["message"] == "String should have at most 256 characters"
    assert await count(db, CommandRow) == 0
    accepted = await api.put(f"/api/workers/{worker_id}/tags", json={"set": {"team": "x" * 256}, "remove": ["old"]})
    assert accepted.status_code == 202, accepted.text
    async with db.session(write=False) as session:
        command = await session.get(CommandRow, accepted.json()["command_id"])
    assert command is not None and command.payload == {
        "worker_id": worker_id,
        "set": {"team": "x" * 256},
        "remove": ["old"],
    }


async def test_idle_detection_is_switched_off_and_on_per_worker(
    api: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    worker_id = await add_worker(db, "running", launched_at=datetime.now(UTC) - timedelta(days=1))

    off = await api.put(f"/api/workers/{worker_id}/idle", json={"enabled": False})

    assert off.status_code == 200, off.text
    assert off.json()["idle_detection_enabled"] is False
    async with db.session(write=False) as session:
        row = await workers.get(session, worker_id)
        [event] = (await session.scalars(select(EventRow).where(EventRow.type == "worker.updated"))).all()
    assert event.data["changes"] == {"idle_detection_enabled": False}
    assert not should_stop(row, settings, datetime.now(UTC))

    on = await api.put(f"/api/workers/{worker_id}/idle", json={"enabled": True})
    assert on.json()["idle_detection_enabled"] is True
    async with db.session(write=False) as session:
        assert should_stop(await workers.get(session, worker_id), settings, datetime.now(UTC))


async def test_a_snooze_holds_a_worker_for_the_minutes_asked(
    api: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    worker_id = await add_worker(db, "running", launched_at=datetime.now(UTC) - timedelta(days=1))
    before = datetime.now(UTC)

    snoozed = await api.put(f"/api/workers/{worker_id}/idle", json={"snooze_minutes": 30})

    assert snoozed.status_code == 200, snoozed.text
    until = datetime.fromisoformat(snoozed.json()["snoozed_until"])
    assert before + timedelta(minutes=30) <= until <= datetime.now(UTC) + timedelta(minutes=30)
    async with db.session(write=False) as session:
        row = await workers.get(session, worker_id)
    assert row.snoozed_until == until
    assert not should_stop(row, settings, until - timedelta(microseconds=1))
    assert should_stop(row, settings, until)


async def test_an_idle_change_that_says_nothing_or_too_much_is_refused(api: httpx.AsyncClient, db: Database) -> None:
    worker_id = await add_worker(db, "running")
    empty = await api.put(f"/api/workers/{worker_id}/idle", json={})
    assert empty.status_code == 400 and "Nothing to change" in empty.json()["detail"]
    for body, field in (
        ({"snooze_minutes": -1}, "snooze_minutes"),
        ({"snooze_minutes": 7 * 24 * 60 + 1}, "snooze_minutes"),
        ({"enabled": "sometimes"}, "enabled"),
        ({"enabled": True, "until": "monday"}, "until"),
    ):
        refused = await api.put(f"/api/workers/{worker_id}/idle", json=body)
        assert refused.status_code == 422, (body, refused.text)
        assert [error["field"] for error in refused.json()["errors"]] == [field]
    missing = await api.put("/api/workers/nope/idle", json={"enabled": False})
    assert missing.status_code == 404
    async with db.session(write=False) as session:
        row = await workers.get(session, worker_id)
        assert (row.idle_detection_enabled, row.snoozed_until) == (True, None)
        assert (await session.scalars(select(EventRow).where(EventRow.type == "worker.updated"))).all() == []
