"""The fleet in memory (`workers/readmodel.py`): loaded from the table, kept current by the outbox through the
relay, reloaded after a reset; and read-your-writes over HTTP."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import delete, func, select

from cml_cloud_manager.aws.types import InstanceMetrics
from cml_cloud_manager.config import Settings
from cml_cloud_manager.events.notifier import Notifier
from cml_cloud_manager.events.relay import Hub
from cml_cloud_manager.jobs.context import Context
from cml_cloud_manager.jobs.integrations import build_integrations
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import EventRow, WorkerRow
from cml_cloud_manager.workers import service
from cml_cloud_manager.workers.events import WorkersObserved
from cml_cloud_manager.workers.metrics import fingerprint, store
from cml_cloud_manager.workers.readmodel import Fleet
from cml_cloud_manager.workers.schemas import FleetSummary, WorkerOut
from cml_cloud_manager.workers.service import WorkerNotFound
from cml_cloud_manager.workers.sync import Observation, instance_fields

from ..storage.test_lock_order import running_instance


async def add(db: Database, name: str, **fields: Any) -> str:
    fields.setdefault("aws_region", "us-east-1")
    fields.setdefault("status", "running")
    async with db.session() as session:
        row = await service.add(session, service.create_row(name=name, **fields), reason="test")
    return row.id


async def table(db: Database) -> list[dict[str, Any]]:
    """Every worker row as the API shows it, in the list's order."""
    async with db.session(write=False) as session:
        rows = (await session.scalars(select(WorkerRow))).all()
    return sorted(
        (WorkerOut.model_validate(r).model_dump(mode="json") for r in rows), key=lambda w: (w["name"], w["id"])
    )


def listed(fleet: Fleet, **filters: Any) -> dict[str, Any]:
    page: dict[str, Any] = json.loads(
        fleet.page(**{"region": None, "status": None, "limit": 1000, "offset": 0, **filters})
    )
    return page


async def started(db: Database, settings: Settings, fleet: Fleet) -> Hub:
    """A relay with the fleet as its consumer, loaded; driven by `catch_up` rather than its own task."""
    hub = Hub(db, Notifier("", settings.redis_prefix), settings, service.snapshot)
    hub.consumers.append(fleet)
    await hub.load()
    return hub


async def test_a_loaded_fleet_answers_as_the_table_holds_it(db: Database) -> None:
    ids = {
        name: await add(db, name, aws_region=region, status=status, tags={"team": name})
        for name, region, status in (
            ("b", "us-east-1", "running"),
            ("a", "eu-west-1", "stopped"),
            ("c", "eu-west-1", "running"),
            ("a", "us-east-1", "running"),  # the same name: then by id
        )
    }
    fleet = Fleet()
    async with db.snapshot() as session:
        await fleet.load(session)

    expected = await table(db)
    assert listed(fleet) == {"items": expected, "total": 4, "limit": 1000, "offset": 0}
    assert json.loads(fleet.get(ids["c"])) == next(w for w in expected if w["id"] == ids["c"])
    assert listed(fleet, limit=2, offset=1)["items"] == expected[1:3]
    assert listed(fleet, offset=10) == {"items": [], "total": 4, "limit": 1000, "offset": 10}
    running_eu = listed(fleet, region="eu-west-1", status="running")
    assert [w["name"] for w in running_eu["items"]] == ["c"] and running_eu["total"] == 1
    assert listed(fleet, status="failed")["total"] == 0
    try:
        fleet.get("nope")
        raise AssertionError("an unknown worker was found")
    except WorkerNotFound as exc:
        assert "nope" in exc.message


async def test_events_bring_it_up_to_date_in_the_lists_order(db: Database, settings: Settings) -> None:
    first = await add(db, "m")
    doomed = await add(db, "x")
    fleet = Fleet()
    hub = await started(db, settings, fleet)

    added = await add(db, "b")
    async with db.session() as session:
        row = await service.get(session, first)
        row.name = "z"  # renamed (as worker-metrics names a worker after its instance): it moves to the end
        await service.observed(session, [row.id])
        await service.remove(session, await service.get(session, doomed), terminated=False)
    assert [w["name"] for w in listed(fleet)["items"]] == ["m", "x"]  # nothing read yet

    await hub.catch_up()
    assert listed(fleet)["items"] == await table(db)
    assert [w["name"] for w in listed(fleet)["items"]] == ["b", "z"] and fleet.get(added)


async def test_rows_written_without_an_event_of_their_own_are_read_again(db: Database, settings: Settings) -> None:
    """worker-metrics rewrites every worker it observes, most of them below METRICS_CHANGE_THRESHOLD."""
    instance = running_instance(1)
    worker_id = await add(
        db,
        "quiet",
        aws_instance_id=instance.id,
        cpu_percent=1.0,
        **instance_fields(instance),
    )
    fleet = Fleet()
    hub = await started(db, settings, fleet)
    async with db.session(write=False) as session:
        seen = {worker_id: fingerprint(await service.get(session, worker_id))}
    observed = Observation(instance=instance, metrics=InstanceMetrics(instance.id, 1.2, None, datetime.now(UTC)))
    integrations = build_integrations(settings)
    try:
        ctx = Context(db=db, settings=settings, integrations=integrations, process_id="test")
        assert await store(ctx, {worker_id: observed}, seen) == (0, 0)
    finally:
        await integrations.aclose()

    async with db.session(write=False) as session:
        written = (await session.scalars(select(EventRow).where(EventRow.seq > hub.position))).all()
    assert [(e.type, e.worker_id, e.data) for e in written] == [
        (*WorkersObserved.types, None, {"worker_ids": [worker_id]})
    ]
    await hub.catch_up()
    shown = json.loads(fleet.get(worker_id))
    assert shown["cpu_percent"] == 1.2 and shown["metrics_at"] is not None
    assert listed(fleet)["items"] == await table(db)


async def test_a_reset_reloads_what_pruned_events_announced(db: Database, settings: Settings) -> None:
    renamed = await add(db, "before")
    fleet = Fleet()
    hub = await started(db, settings, fleet)
    async with db.session() as session:
        row = await service.get(session, renamed)
        row.name = "after"
        await service.observed(session, [row.id])
    await add(db, "later")
    # Housekeeping prunes the rename's event before this replica's relay read it.
    async with db.session() as session:
        newest = (await session.execute(select(func.max(EventRow.seq)))).scalar_one()
        await session.execute(delete(EventRow).where(EventRow.seq < newest))

    await hub.catch_up()
    assert hub.position == newest
    assert [w["name"] for w in listed(fleet)["items"]] == ["after", "later"]
    assert listed(fleet)["items"] == await table(db)


async def test_summary_counts_running_costs_and_cpu(db: Database) -> None:
    await add(db, "r1", instance_type="c5.2xlarge", cpu_percent=10.0)
    await add(db, "r2", instance_type="c5.2xlarge", cpu_percent=30.0)
    await add(db, "r3", instance_type="x9.unknown")
    await add(db, "s1", instance_type="c5.2xlarge", status="stopped", cpu_percent=90.0)
    fleet = Fleet()
    async with db.snapshot() as session:
        await fleet.load(session)
    summary = fleet.summary()
    assert isinstance(summary, FleetSummary)
    assert (summary.total, summary.running, summary.stopped, summary.failed) == (4, 3, 1, 0)
    assert summary.by_status == {"running": 3, "stopped": 1}
    assert summary.avg_cpu_percent == 20.0  # of running workers with a sample
    assert summary.unpriced_types == ["x9.unknown"]
    assert summary.cost_by_type["c5.2xlarge"] > 0 and summary.hourly_cost_usd == round(
        summary.cost_by_type["c5.2xlarge"], 2
    )


async def test_a_write_names_its_event_and_reads_see_it(api: httpx.AsyncClient, db: Database) -> None:
    worker_id = await add(db, "w")
    # Without the test client's own header (see conftest): as a browser or script would call.
    async with httpx.AsyncClient(base_url=api.base_url, timeout=10) as plain:
        await api.get(f"/api/workers/{worker_id}")  # the worker is known to the fleet
        written = await plain.put(f"/api/workers/{worker_id}/idle", json={"enabled": False})
        assert written.status_code == 200, written.text
        async with db.session(write=False) as session:
            newest = (await session.execute(select(func.max(EventRow.seq)))).scalar_one()
        assert written.headers["x-event-sequence"] == str(newest)
        # The write's response came once this replica applied it: a read here sees it, header or not.
        assert (await plain.get(f"/api/workers/{worker_id}")).json() == written.json()
        assert "x-event-sequence" not in (await plain.get("/api/workers")).headers  # reads commit nothing

        ahead = str(newest + 1000)
        began = time.monotonic()
        late = await plain.get(f"/api/workers/{worker_id}", headers={"X-Event-Sequence": ahead})
        waited = time.monotonic() - began
        assert late.status_code == 200 and 0.9 <= waited < 3, waited  # bounded: then what the replica has

        bad = await plain.get("/api/workers", headers={"X-Event-Sequence": "latest"})
        assert bad.status_code == 400 and "X-Event-Sequence" in bad.json()["detail"]
