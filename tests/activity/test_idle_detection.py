"""The `idle-detection` job end to end in one process: telemetry read from the CML simulator over HTTP, the
worker's record in a real database, and idle instances stopped in the AWS emulator."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from cml_cloud_manager.activity.tasks import check_worker, idle_detection
from cml_cloud_manager.aws import ec2
from cml_cloud_manager.aws.session import AwsClients
from cml_cloud_manager.cml.simulator import Simulator
from cml_cloud_manager.config import Settings
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import CommandRow, EventRow, WorkerRow
from cml_cloud_manager.workers import service as workers
from cml_cloud_manager.workers.domain import ServiceStatus, WorkerStatus

from ..simulated import add_worker, job_context

REGION = "us-east-1"
ADMIN = "00000000-0000-4000-a000-000000000000"  # the control plane's own polling shows up under this id
Launch = Callable[..., Awaitable[list[str]]]


def ms(moment: datetime) -> datetime:
    """CML writes telemetry times to the millisecond."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


async def instances(register_ami: Callable[..., Awaitable[str]], launch: Launch, count: int) -> list[str]:
    return await launch(await register_ami(), count=count)


def quiet_host(sim: Simulator, key: str) -> None:
    """A host whose history holds only what the test adds (seeding gives it hours of made-up activity)."""
    sim.host(key).telemetry.clear()


async def ec2_state(clients: AwsClients, instance_id: str) -> str:
    [instance] = await ec2.describe_instances(clients, REGION, instance_ids=[instance_id])
    return instance.state.value


async def stored(db: Database, worker_id: str) -> WorkerRow:
    async with db.session(write=False) as session:
        return await workers.get(session, worker_id)


async def events(db: Database, worker_id: str) -> list[EventRow]:
    async with db.session(write=False) as session:
        return list((await session.scalars(select(EventRow).where(EventRow.worker_id == worker_id))).all())


async def test_an_idle_worker_is_stopped_in_ec2_and_followed_until_stopped(
    db: Database,
    settings: Settings,
    sim: Simulator,
    clients: AwsClients,
    register_ami: Callable[..., Awaitable[str]],
    launch: Launch,
) -> None:
    [instance_id] = await instances(register_ami, launch, 1)
    quiet_host(sim, instance_id)
    now = datetime.now(UTC)
    # Only noise and our own polling since the launch two hours ago: nobody used it.
    sim.add_telemetry_event(instance_id, "system_stats", {"cpu_percent": 3.0}, timestamp=now - timedelta(minutes=1))
    sim.add_telemetry_event(instance_id, "user_activity", {"user_id": ADMIN}, timestamp=now - timedelta(minutes=1))
    worker = await add_worker(db, instance_id, launched_at=now - timedelta(hours=2))

    async with job_context(db, settings) as ctx:
        summary = await idle_detection(ctx)

    assert summary.model_dump() == {"checked": 1, "stopped": 1, "active": 0, "failed": 0, "stopped_ids": [worker.id]}
    assert await ec2_state(clients, instance_id) in ("stopping", "stopped")
    row = await stored(db, worker.id)
    assert row.status in (WorkerStatus.STOPPING, WorkerStatus.STOPPED)
    assert (row.auto_pauses, row.last_activity_at) == (1, None)
    paused = [e for e in await events(db, worker.id) if e.type == "worker.idle.paused"]
    assert [e.data["auto_pauses"] for e in paused] == [1]
    async with db.session(write=False) as session:
        follow = (await session.scalars(select(CommandRow).where(CommandRow.worker_id == worker.id))).one()
    assert (follow.type, follow.payload, follow.status) == (
        "worker.follow",
        {"worker_id": worker.id, "goal": "stopped"},
        "queued",
    )


async def test_a_persons_activity_is_recorded_and_keeps_the_worker_running(
    db: Database,
    settings: Settings,
    sim: Simulator,
    clients: AwsClients,
    register_ami: Callable[..., Awaitable[str]],
    launch: Launch,
) -> None:
    [instance_id] = await instances(register_ami, launch, 1)
    quiet_host(sim, instance_id)
    now = datetime.now(UTC)
    student_at = ms(now - timedelta(minutes=5))
    sim.add_telemetry_event(instance_id, "start_lab", {"user_id": "student-1", "lab_id": "l1"}, timestamp=student_at)
    # Later, but ours: it must not move the clock.
    sim.add_telemetry_event(instance_id, "user_activity", {"user_id": ADMIN}, timestamp=now - timedelta(minutes=1))
    worker = await add_worker(db, instance_id, launched_at=now - timedelta(hours=2))

    async with job_context(db, settings) as ctx:
        first = await idle_detection(ctx)
        second = await idle_detection(ctx)

    assert (
        first.model_dump()
        == second.model_dump()
        == {"checked": 1, "stopped": 0, "active": 1, "failed": 0, "stopped_ids": []}
    )
    assert await ec2_state(clients, instance_id) == "running"
    row = await stored(db, worker.id)
    assert (row.status, row.last_activity_at, row.auto_pauses) == (WorkerStatus.RUNNING, student_at, 0)
    # Recorded once: the second run asks only for what came after it and finds nothing new.
    updates = [e for e in await events(db, worker.id) if e.type == "worker.activity.updated"]
    assert [datetime.fromisoformat(e.data["changes"]["last_activity_at"]) for e in updates] == [student_at]


async def test_the_timeout_runs_from_the_last_activity_cml_reported(
    db: Database,
    settings: Settings,
    sim: Simulator,
    clients: AwsClients,
    register_ami: Callable[..., Awaitable[str]],
    launch: Launch,
) -> None:
    [instance_id] = await instances(register_ami, launch, 1)
    quiet_host(sim, instance_id)
    used_at = ms(datetime.now(UTC) - timedelta(hours=3))
    sim.add_telemetry_event(instance_id, "stop_node", {"user_id": "student-2"}, timestamp=used_at)
    worker = await add_worker(db, instance_id, launched_at=used_at - timedelta(hours=1))
    timeout = timedelta(minutes=settings.idle_timeout_minutes)

    async with job_context(db, settings) as ctx:
        just_before = await check_worker(
            ctx, await stored(db, worker.id), used_at + timeout - timedelta(milliseconds=1)
        )
        assert (just_before, await ec2_state(clients, instance_id)) == ("active", "running")
        at_the_timeout = await check_worker(ctx, await stored(db, worker.id), used_at + timeout)

    assert at_the_timeout == "stopped"
    assert await ec2_state(clients, instance_id) in ("stopping", "stopped")
    assert (await stored(db, worker.id)).last_activity_at == used_at


async def test_only_running_available_workers_that_take_part_are_checked(
    db: Database,
    settings: Settings,
    sim: Simulator,
    clients: AwsClients,
    register_ami: Callable[..., Awaitable[str]],
    launch: Launch,
) -> None:
    """Opted out, stopped, or with CML not (yet) available: not checked. Snoozed: checked, and kept."""
    opted_out, stopped, cml_down, snoozed = await instances(register_ami, launch, 4)
    long_ago = datetime.now(UTC) - timedelta(days=1)
    for key in (opted_out, stopped, cml_down, snoozed):
        quiet_host(sim, key)
    await add_worker(db, opted_out, name="opted-out", launched_at=long_ago, idle_detection_enabled=False)
    await add_worker(db, stopped, name="stopped", launched_at=long_ago, status=WorkerStatus.STOPPED)
    await add_worker(db, cml_down, name="cml-down", launched_at=long_ago, service_status=ServiceStatus.UNAVAILABLE)
    kept = await add_worker(
        db, snoozed, name="snoozed", launched_at=long_ago, snoozed_until=datetime.now(UTC) + timedelta(minutes=5)
    )

    async with job_context(db, settings) as ctx:
        summary = await idle_detection(ctx)

    assert summary.model_dump() == {"checked": 1, "stopped": 0, "active": 1, "failed": 0, "stopped_ids": []}
    for key in (opted_out, stopped, cml_down, snoozed):
        assert await ec2_state(clients, key) == "running", key
    assert (await stored(db, kept.id)).status == WorkerStatus.RUNNING


async def test_a_host_that_cannot_be_read_is_never_stopped(
    db: Database,
    settings: Settings,
    sim: Simulator,
    clients: AwsClients,
    register_ami: Callable[..., Awaitable[str]],
    launch: Launch,
) -> None:
    """No telemetry means no evidence of idleness: the worker is reported failed, and left running."""
    unreachable, readable = await instances(register_ami, launch, 2)
    for key in (unreachable, readable):
        quiet_host(sim, key)
    sim.configure(unreachable, unreachable=True)
    long_ago = datetime.now(UTC) - timedelta(days=1)
    failing = await add_worker(db, unreachable, name="unreachable", launched_at=long_ago)
    idle = await add_worker(db, readable, name="idle", launched_at=long_ago)

    async with job_context(db, settings) as ctx:
        summary = await idle_detection(ctx)

    assert summary.model_dump() == {"checked": 2, "stopped": 1, "active": 0, "failed": 1, "stopped_ids": [idle.id]}
    assert await ec2_state(clients, unreachable) == "running"
    assert (await stored(db, failing.id)).status == WorkerStatus.RUNNING
