"""License registration and deregistration commands, run as a worker process runs them (a command runner in burst
mode), against the CML simulator over HTTP: what CML ends up with, what the worker record says, what is announced,
and that the token is gone once the command ends."""

from __future__ import annotations

from sqlalchemy import select

from cml_cloud_manager.cml.simulator import Simulator
from cml_cloud_manager.config import Settings
from cml_cloud_manager.jobs.commands import enqueue
from cml_cloud_manager.licensing.schemas import DeregisterLicense, RegisterLicense
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import CommandRow, CommandSecretRow, EventRow
from cml_cloud_manager.workers import service as workers
from cml_cloud_manager.workers.domain import WorkerStatus

from ..simulated import add_worker, command_runner, job_context

TOKEN = "NmQ4ZTc2YjAtZDc2Yi00Y2Rj-test-token"


async def run(
    db: Database, settings: Settings, payload: RegisterLicense | DeregisterLicense, secret: str | None = None
) -> CommandRow:
    async with db.session() as session:
        command = await enqueue(session, payload, worker_id=payload.worker_id, secret=secret)
    async with job_context(db, settings) as ctx:
        assert await command_runner(ctx).run_burst() == 1
    async with db.session(write=False) as session:
        stored = await session.get(CommandRow, command.id)
        assert await session.get(CommandSecretRow, command.id) is None, "the token outlived its command"
    assert stored is not None
    return stored


async def license_status(db: Database, worker_id: str) -> str:
    async with db.session(write=False) as session:
        return (await workers.get(session, worker_id)).license_status


async def announced(db: Database, worker_id: str) -> list[tuple[str, dict[str, object]]]:
    async with db.session(write=False) as session:
        rows = (
            await session.scalars(select(EventRow).where(EventRow.worker_id == worker_id).order_by(EventRow.seq))
        ).all()
    return [(e.type, e.data) for e in rows if e.type.startswith("license.")]


async def test_a_license_is_registered_and_deregistered(
    db: Database, settings: Settings, sim: Simulator, unlicensed_host: str
) -> None:
    worker = await add_worker(db, unlicensed_host)

    done = await run(db, settings, RegisterLicense(worker_id=worker.id, reregister=False), secret=TOKEN)

    assert (done.status, done.result, done.progress) == (
        "succeeded",
        {"license_status": "registered"},
        "Registering the CML license with Smart Licensing",
    )
    assert sim.host(unlicensed_host).license.kind == "registered"
    assert await license_status(db, worker.id) == "registered"
    assert await announced(db, worker.id) == [
        ("license.registration.started", {"name": "w1"}),
        ("license.registration.completed", {"name": "w1", "license_status": "registered"}),
    ]

    done = await run(db, settings, DeregisterLicense(worker_id=worker.id))

    assert (done.status, done.result) == ("succeeded", {"license_status": "unregistered"})
    assert sim.host(unlicensed_host).license.kind == "unregistered"
    assert await license_status(db, worker.id) == "unregistered"


async def test_cml_refusing_fails_the_command_with_its_reason_and_changes_nothing(
    db: Database, settings: Settings, sim: Simulator, unlicensed_host: str
) -> None:
    worker = await add_worker(db, unlicensed_host)
    assert (await run(db, settings, RegisterLicense(worker_id=worker.id), secret=TOKEN)).status == "succeeded"
    registered_to = sim.host(unlicensed_host).license.smart_account

    again = await run(db, settings, RegisterLicense(worker_id=worker.id, reregister=False), secret="another-token")

    assert again.status == "failed" and "already registered" in again.error
    assert sim.host(unlicensed_host).license.smart_account == registered_to
    assert await license_status(db, worker.id) == "registered"
    [(kind, data)] = [a for a in await announced(db, worker.id) if a[0].endswith(".failed")]
    assert kind == "license.registration.failed" and "already registered" in str(data["error"])

    # Asked to re-register, CML takes the new token.
    again = await run(db, settings, RegisterLicense(worker_id=worker.id, reregister=True), secret="another-token")
    assert again.status == "succeeded"
    assert sim.host(unlicensed_host).license.smart_account != registered_to


async def test_a_token_cml_accepts_then_rejects_is_reported_invalid(
    db: Database, settings: Settings, sim: Simulator, unlicensed_host: str
) -> None:
    """Smart Licensing answers later: CML takes the request, then reports the registration invalid."""
    worker = await add_worker(db, unlicensed_host)

    done = await run(db, settings, RegisterLicense(worker_id=worker.id), secret="invalid-expired-token")

    assert (done.status, done.result) == ("succeeded", {"license_status": "invalid"})
    assert await license_status(db, worker.id) == "invalid"


async def test_deregistering_what_is_not_registered_fails(
    db: Database, settings: Settings, unlicensed_host: str
) -> None:
    worker = await add_worker(db, unlicensed_host)

    done = await run(db, settings, DeregisterLicense(worker_id=worker.id))

    assert done.status == "failed" and "already been deregistered" in done.error
    assert [kind for kind, _ in await announced(db, worker.id)] == [
        "license.deregistration.started",
        "license.deregistration.failed",
    ]


async def test_nothing_is_asked_of_a_worker_that_is_not_running(
    db: Database, settings: Settings, sim: Simulator, unlicensed_host: str
) -> None:
    worker = await add_worker(db, unlicensed_host, status=WorkerStatus.STOPPED)

    done = await run(db, settings, RegisterLicense(worker_id=worker.id), secret=TOKEN)

    assert done.status == "failed"
    assert done.error == "Cannot change the license of worker 'w1' while it is stopped: it must be running."
    assert sim.host(unlicensed_host).request_count == 0
    assert await announced(db, worker.id) == []


async def test_a_registration_whose_token_is_gone_says_to_queue_it_again(
    db: Database, settings: Settings, sim: Simulator, unlicensed_host: str
) -> None:
    worker = await add_worker(db, unlicensed_host)

    done = await run(db, settings, RegisterLicense(worker_id=worker.id), secret=None)

    assert done.status == "failed" and "queue it again" in done.error
    assert sim.host(unlicensed_host).license.kind == "unregistered"
    # Nothing announced a registration that never began (a "started" with no end would stay open in the UI).
    assert await announced(db, worker.id) == []
