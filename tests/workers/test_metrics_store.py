"""worker-metrics stores what it observed, except over a change made to a worker while the run was observing."""

from __future__ import annotations

from sqlalchemy import select, update

from cml_cloud_manager.config import Settings
from cml_cloud_manager.jobs.context import Context
from cml_cloud_manager.jobs.integrations import build_integrations
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import WorkerRow
from cml_cloud_manager.workers import service
from cml_cloud_manager.workers.metrics import fingerprint, store
from cml_cloud_manager.workers.sync import CmlObservation, Observation


async def test_a_change_made_during_the_run_is_not_undone(db: Database, settings: Settings) -> None:
    async with db.session() as session:
        for name in ("registered-meanwhile", "untouched"):
            row = service.create_row(name=name, aws_region="us-east-1", aws_instance_id=f"i-{name}", status="running")
            session.add(row)
    async with db.session(write=False) as session:
        rows = {row.name: row for row in (await session.scalars(select(WorkerRow))).all()}
    seen = {row.id: fingerprint(row) for row in rows.values()}
    # A license command completes while the run is still talking to the hosts.
    async with db.session() as session:
        meanwhile = rows["registered-meanwhile"].id
        await session.execute(update(WorkerRow).where(WorkerRow.id == meanwhile).values(license_status="registered"))
    stale = {row.id: Observation(cml=CmlObservation(error="host did not answer")) for row in rows.values()}

    integrations = build_integrations(settings)
    ctx = Context(db=db, settings=settings, integrations=integrations, process_id="test")
    try:
        changed, superseded = await store(ctx, stale, seen)
    finally:
        await integrations.aclose()

    assert (changed, superseded) == (1, 1)
    async with db.session(write=False) as session:
        after = {row.name: row for row in (await session.scalars(select(WorkerRow))).all()}
    assert after["registered-meanwhile"].license_status == "registered"
    assert after["registered-meanwhile"].service_reason == ""
    assert after["untouched"].service_reason == "host did not answer"
