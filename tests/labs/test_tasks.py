"""The `labs-refresh` job and the lab commands, run as a worker process runs them (a command runner in burst
mode), against the CML simulator over HTTP and a real database."""

from __future__ import annotations

from sqlalchemy import event, select

from cml_cloud_manager.cml import CMLClient, LabState
from cml_cloud_manager.cml.simulator import Simulator
from cml_cloud_manager.config import Settings
from cml_cloud_manager.jobs.commands import enqueue
from cml_cloud_manager.labs import service
from cml_cloud_manager.labs.schemas import ImportLab, LabAction
from cml_cloud_manager.labs.tasks import labs_refresh
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import CommandRow, EventRow, LabRow, WorkerRow
from cml_cloud_manager.workers import service as workers
from cml_cloud_manager.workers.domain import ServiceStatus, WorkerStatus
from cml_cloud_manager.workers.schemas import RefreshLabs, WorkerCommand

from ..simulated import add_worker, command_runner, job_context, two_routers


async def run(db: Database, settings: Settings, payload: WorkerCommand) -> CommandRow:
    """Queue one command, run the queue to its end, and return the command as stored."""
    async with db.session() as session:
        command = await enqueue(session, payload, worker_id=payload.worker_id)
    async with job_context(db, settings) as ctx:
        assert await command_runner(ctx).run_burst() == 1
    async with db.session(write=False) as session:
        stored = await session.get(CommandRow, command.id)
    assert stored is not None
    return stored


async def lab_record(db: Database, worker_id: str, lab_id: str) -> LabRow | None:
    async with db.session(write=False) as session:
        return (await session.scalars(select(LabRow).where(LabRow.worker_id == worker_id, LabRow.id == lab_id))).first()


async def refreshed(db: Database, settings: Settings, worker: WorkerRow) -> dict[str, LabRow]:
    """Our records after a `labs.refresh` command, by CML lab id."""
    done = await run(db, settings, RefreshLabs(worker_id=worker.id))
    assert done.status == "succeeded", done.error
    async with db.session(write=False) as session:
        return {row.cml_lab_id: row for row in await service.list_for(session, worker.id)}


async def test_labs_refresh_reads_every_available_worker_and_names_the_ones_that_fail(
    db: Database, settings: Settings, sim: Simulator, empty_host: str, host_cml: CMLClient
) -> None:
    await host_cml.import_lab(two_routers("One"))
    await host_cml.import_lab(two_routers("Two"))
    answering = await add_worker(db, empty_host, name="answering")
    sim.configure(f"{empty_host}-down", unreachable=True)
    down = await add_worker(db, f"{empty_host}-down", name="down")
    # Neither is asked: CML cannot answer on a stopped instance, nor before its service is up.
    await add_worker(db, f"{empty_host}-stopped", name="stopped", status=WorkerStatus.STOPPED)
    await add_worker(db, f"{empty_host}-booting", name="booting", service_status=ServiceStatus.STARTING)

    async with job_context(db, settings) as ctx:
        summary = await labs_refresh(ctx)

    assert summary.model_dump(exclude={"failed"}) == {"workers": 2, "added": 2, "updated": 0, "removed": 0}
    assert list(summary.failed) == [down.id] and "unreachable" in summary.failed[down.id].lower()
    async with db.session(write=False) as session:
        assert (await workers.get(session, answering.id)).labs_count == 2
        assert (await workers.get(session, down.id)).labs_count == 0
        counted = (
            await session.scalars(
                select(EventRow).where(EventRow.worker_id == answering.id, EventRow.type == "worker.metrics.updated")
            )
        ).all()
    assert [e.data["changes"] for e in counted] == [{"labs_count": 2}]
    for key in (f"{empty_host}-stopped", f"{empty_host}-booting"):
        assert sim.host(key).request_count == 0, f"{key} was asked"


async def test_a_lab_goes_through_start_stop_wipe_and_delete(
    db: Database, settings: Settings, empty_host: str, host_cml: CMLClient
) -> None:
    cml_id = (await host_cml.import_lab(two_routers("Lifecycle"))).id
    worker = await add_worker(db, empty_host)
    lab = (await refreshed(db, settings, worker))[cml_id]

    for action, state in (("start", "STARTED"), ("stop", "STOPPED"), ("wipe", "DEFINED_ON_CORE")):
        done = await run(db, settings, LabAction(worker_id=worker.id, lab_id=lab.id, action=action))
        assert (done.status, done.result) == ("succeeded", {"lab_id": lab.id, "state": state}), done.error
        assert done.progress == f"{action.capitalize()} lab 'Lifecycle'"
        assert await host_cml.lab_state(cml_id) == LabState(state)
        record = await lab_record(db, worker.id, lab.id)
        assert record is not None and record.state == state
        assert record.history["states"][-1]["reason"] == f"{action} by an operator"

    done = await run(db, settings, LabAction(worker_id=worker.id, lab_id=lab.id, action="delete"))
    assert (done.status, done.result) == ("succeeded", {"lab_id": lab.id, "deleted": True}), done.error
    assert await host_cml.list_labs() == []
    assert await lab_record(db, worker.id, lab.id) is None


async def test_cml_not_our_record_decides_whether_an_action_is_legal(
    db: Database, settings: Settings, empty_host: str, host_cml: CMLClient
) -> None:
    cml_id = (await host_cml.import_lab(two_routers("Started elsewhere"))).id
    worker = await add_worker(db, empty_host)
    lab = (await refreshed(db, settings, worker))[cml_id]
    await host_cml.start_lab(cml_id)  # by someone in CML's own UI: our record still says defined on core

    done = await run(db, settings, LabAction(worker_id=worker.id, lab_id=lab.id, action="start"))

    assert done.status == "failed"
    assert done.error == (
        "Cannot start lab 'Started elsewhere' while it is started: it must be defined on core or stopped."
    )
    record = await lab_record(db, worker.id, lab.id)
    assert record is not None and record.state == "DEFINED_ON_CORE"


async def test_a_stopped_lab_is_not_deleted_until_it_is_wiped(
    db: Database, settings: Settings, empty_host: str, host_cml: CMLClient
) -> None:
    """CML removes only a stopped and wiped lab: a delete of a stopped one fails saying so, before CML is asked,
    and the lab and its record stay."""
    cml_id = (await host_cml.import_lab(two_routers("Stopped"))).id
    await host_cml.start_lab(cml_id)
    await host_cml.stop_lab(cml_id)
    worker = await add_worker(db, empty_host)
    lab = (await refreshed(db, settings, worker))[cml_id]

    done = await run(db, settings, LabAction(worker_id=worker.id, lab_id=lab.id, action="delete"))

    assert (done.status, done.error) == (
        "failed",
        "Cannot delete lab 'Stopped' while it is stopped: it must be defined on core. Stop and wipe it first.",
    )
    assert await host_cml.lab_state(cml_id) == LabState.STOPPED
    assert await lab_record(db, worker.id, lab.id) is not None


async def test_an_imported_lab_is_recorded_under_the_title_asked_for(
    db: Database, settings: Settings, empty_host: str, host_cml: CMLClient
) -> None:
    worker = await add_worker(db, empty_host)
    payload = ImportLab(worker_id=worker.id, yaml=two_routers("From the file"), title="Asked for")

    done = await run(db, settings, payload)

    assert done.status == "succeeded", done.error
    assert done.result is not None and (done.result["title"], done.result["warnings"]) == ("Asked for", [])
    assert await host_cml.list_labs() == [done.result["cml_lab_id"]]
    record = await lab_record(db, worker.id, done.result["lab_id"])
    assert record is not None and (record.title, record.node_count) == ("Asked for", 2)


async def test_lab_commands_refuse_a_worker_that_is_not_running(
    db: Database, settings: Settings, sim: Simulator, empty_host: str
) -> None:
    worker = await add_worker(db, empty_host, status=WorkerStatus.STOPPED)
    asked_before = sim.host(empty_host).request_count

    refresh = await run(db, settings, RefreshLabs(worker_id=worker.id))
    imported = await run(db, settings, ImportLab(worker_id=worker.id, yaml=two_routers("x")))

    for done in (refresh, imported):
        assert done.status == "failed"
        assert done.error == "Cannot operate labs on worker 'w1' while it is stopped: it must be running."
    assert sim.host(empty_host).request_count == asked_before


async def test_labs_refresh_over_many_hosts_leaves_the_pool_room_for_claims(
    db: Database, settings: Settings, sim: Simulator, empty_host: str
) -> None:
    """Hosts that answer together write together: the fan-out holds at most half the pool's connections (under
    load, the runner's and scheduler's claims once waited out the pool timeout behind it)."""
    hosts = [f"{empty_host}-{i}" for i in range(24)]
    for i, host in enumerate(hosts):
        sim.host(host).labs.clear()
        await add_worker(db, host, name=f"w{i}")
    checked_out = peak = 0

    def checkout(*_: object) -> None:
        nonlocal checked_out, peak
        checked_out += 1
        peak = max(peak, checked_out)

    def checkin(*_: object) -> None:
        nonlocal checked_out
        checked_out -= 1

    pool = db.write_engine.sync_engine.pool
    event.listen(pool, "checkout", checkout)
    event.listen(pool, "checkin", checkin)
    try:
        async with job_context(db, settings) as ctx:
            summary = await labs_refresh(ctx)
    finally:
        event.remove(pool, "checkout", checkout)
        event.remove(pool, "checkin", checkin)

    assert (summary.workers, summary.failed) == (24, {})
    assert 1 <= peak <= settings.database_pool_size // 2, peak
