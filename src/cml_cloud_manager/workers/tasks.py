"""Worker commands run by the background worker: start, stop, delete, create, import, tags, monitoring."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from ..aws import ec2
from ..aws.errors import InstanceNotFound, ProvisioningFailed
from ..aws.provision import run_instance
from ..aws.session import AwsClients
from ..aws.types import Instance, StateChange
from ..errors import Conflict
from ..jobs.commands import enqueue
from ..jobs.context import Context
from ..storage.models import WorkerRow
from . import exclusions, service
from .domain import WorkerStatus, check_action
from .events import WorkerUpdated
from .follow import follow
from .metrics import refresh_workers
from .schemas import (
    Created,
    CreateWorker,
    Deleted,
    DeleteWorker,
    Followed,
    FollowState,
    Imported,
    ImportInstance,
    MonitoringSet,
    Observed,
    RefreshWorkers,
    SetMonitoring,
    SetTags,
    StartWorker,
    StopWorker,
    TagsSet,
)
from .sync import TAG_WORKER_ID, instance_fields


async def _load(ctx: Context, worker_id: str) -> WorkerRow:
    async with ctx.db.session(write=False) as session:
        return await service.get(session, worker_id)


@dataclass(frozen=True)
class Power:
    call: Callable[[AwsClients, str, Sequence[str]], Awaitable[dict[str, StateChange]]]
    verb: str
    done: str
    goal: WorkerStatus
    # The statuses in which the action is already under way: a command that finds its action there (its previous
    # attempt was interrupted while following, or someone else did the same meanwhile) only follows it.
    under_way: frozenset[WorkerStatus]


POWER = {
    "start": Power(
        ec2.start_instances,
        "Starting",
        "started",
        WorkerStatus.RUNNING,
        frozenset({WorkerStatus.PENDING, WorkerStatus.STARTING, WorkerStatus.RUNNING}),
    ),
    "stop": Power(
        ec2.stop_instances,
        "Stopping",
        "stopped",
        WorkerStatus.STOPPED,
        frozenset({WorkerStatus.STOPPING, WorkerStatus.STOPPED}),
    ),
}


async def _power(ctx: Context, worker_id: str, action: str) -> Followed:
    """Start or stop the instance, record the state EC2 answers with, then follow it to its end."""
    worker = await _load(ctx, worker_id)
    power = POWER[action]
    if worker.status not in power.under_way:
        check_action(action, worker.status, name=worker.name)
        assert worker.aws_instance_id
        await ctx.progress(f"{power.verb} instance {worker.aws_instance_id}")
        changes = await power.call(ctx.integrations.aws, worker.aws_region, [worker.aws_instance_id])
        async with ctx.db.session() as session:
            row = await service.get(session, worker.id, for_update=True)  # not removed under us
            change = changes.get(worker.aws_instance_id)
            announced = change is not None and await service.set_status(
                session, row, change.current_state.value, reason=f"{power.done} by an operator"
            )
            if action == "start":
                row.last_resumed_at = datetime.now(UTC)  # starts the idle-detection snooze
            else:
                row.manual_pauses += 1
            if not announced:  # no row change goes without an event: the API replicas read the row again
                await service.observed(session, [row.id])
    return await follow(ctx, worker.id, power.goal)


async def start(ctx: Context, payload: StartWorker) -> Followed:
    return await _power(ctx, payload.worker_id, "start")


async def stop(ctx: Context, payload: StopWorker) -> Followed:
    return await _power(ctx, payload.worker_id, "stop")


async def follow_state(ctx: Context, payload: FollowState) -> Followed:
    """Follow a change made outside a command (idle detection's stops)."""
    return await follow(ctx, payload.worker_id, payload.goal)


async def delete(ctx: Context, payload: DeleteWorker) -> Deleted:
    """Stop managing the worker; with `terminate`, terminate its instance first and follow it until it is gone
    (a failure keeps the record)."""
    worker = await _load(ctx, payload.worker_id)
    terminated = False
    if payload.terminate and worker.aws_instance_id and worker.status != WorkerStatus.TERMINATED:
        try:
            if worker.status != WorkerStatus.SHUTTING_DOWN:  # else an interrupted attempt already asked
                await ctx.progress(f"Terminating instance {worker.aws_instance_id}")
                changes = await ec2.terminate_instances(
                    ctx.integrations.aws, worker.aws_region, [worker.aws_instance_id]
                )
                if (change := changes.get(worker.aws_instance_id)) is not None:
                    async with ctx.db.session() as session:
                        row = await service.get(session, worker.id)
                        await service.set_status(
                            session, row, change.current_state.value, reason="terminated by an operator"
                        )
            await follow(ctx, worker.id, WorkerStatus.TERMINATED)
        except InstanceNotFound:
            pass  # already gone: nothing left to pay for
        terminated = True
    async with ctx.db.session() as session:
        row = await service.get(session, worker.id)
        await service.remove(session, row, terminated=terminated)
    return Deleted(deleted=worker.id, terminated=terminated)


async def create(ctx: Context, payload: CreateWorker) -> Created:
    """Provision an instance for a worker record made by the API. The command id is the EC2 idempotency token,
    so a retry after a crash finds the instance it already launched instead of launching a second one."""
    worker = await _load(ctx, payload.worker_id)
    settings = ctx.settings
    tags = {**settings.cml_instance_tags, **payload.tags, TAG_WORKER_ID: worker.id}
    await ctx.progress(f"Launching a {worker.instance_type} instance from {worker.ami_id} in {worker.aws_region}")
    try:
        instance = await run_instance(
            ctx.integrations.aws,
            worker.aws_region,
            ami_id=worker.ami_id,
            instance_type=worker.instance_type,
            subnet_id=payload.subnet_id or settings.cml_subnet_id or None,
            security_group_ids=payload.security_group_ids or settings.cml_security_group_ids,
            key_name=payload.key_name or settings.cml_key_name or None,
            tags=tags,
            name=worker.name,
            client_token=ctx.command_id,
        )
    except ProvisioningFailed as exc:
        async with ctx.db.session() as session:
            row = await service.get(session, worker.id)
            row.error = exc.message
            if not await service.set_status(session, row, WorkerStatus.FAILED, reason=exc.message):
                await service.observed(session, [row.id])
        raise
    await ctx.progress(f"Instance {instance.id} launched")
    async with ctx.db.session() as session:
        row = await service.get(session, worker.id, for_update=True)  # not removed under us
        await _adopt(session, row, instance)
    followed = await follow(ctx, worker.id, WorkerStatus.RUNNING)
    return Created(instance_id=instance.id, **followed.model_dump(exclude_unset=True))


async def _adopt(session: AsyncSession, row: WorkerRow, instance: Instance) -> None:
    row.aws_instance_id = instance.id
    for name, value in instance_fields(instance).items():
        setattr(row, name, value)
    await service.set_status(session, row, instance.state.value, reason="instance launched")
    await service.touch(session, row, WorkerUpdated.of(row, aws_instance_id=instance.id))


async def import_instance(ctx: Context, payload: ImportInstance) -> Imported:
    region, instance_id = payload.region, payload.instance_id
    await ctx.progress(f"Reading instance {instance_id} in {region}")
    instance = await ec2.get_instance(ctx.integrations.aws, region, instance_id)
    async with ctx.db.session() as session:
        worker = await import_one(session, instance, reason="imported by an operator")
        await enqueue(session, RefreshWorkers(worker_ids=[worker.id]), worker_id=worker.id)
    return Imported(worker_id=worker.id, status=worker.status)


async def import_one(session: AsyncSession, instance: Instance, *, reason: str, ami_name: str = "") -> WorkerRow:
    if await service.by_instance(session, instance.id) is not None:
        raise Conflict(f"Instance {instance.id} is already managed")
    if await exclusions.excluded(session, [instance.id]):
        raise Conflict(exclusions.refusal(instance.id))
    if instance.state.value == WorkerStatus.TERMINATED:
        raise Conflict(f"Instance {instance.id} is terminated; there is nothing to manage")
    row = service.create_row(
        name=instance.name or instance.id,
        aws_region=instance.region,
        aws_instance_id=instance.id,
        ami_name=ami_name,
        status=WorkerStatus(instance.state.value),
        **instance_fields(instance),
    )
    return await service.add(session, row, reason=reason)


async def set_tags(ctx: Context, payload: SetTags) -> TagsSet:
    worker = await _load(ctx, payload.worker_id)
    assert worker.aws_instance_id
    add, remove = payload.set, payload.remove
    if add:
        await ec2.create_tags(ctx.integrations.aws, worker.aws_region, [worker.aws_instance_id], add)
    if remove:
        await ec2.delete_tags(ctx.integrations.aws, worker.aws_region, [worker.aws_instance_id], remove)
    async with ctx.db.session() as session:
        row = await service.get(session, worker.id, for_update=True)  # not removed under us
        row.tags = {**{k: v for k, v in row.tags.items() if k not in remove}, **add}
        await service.touch(session, row, WorkerUpdated.of(row, tags=row.tags))
    return TagsSet(tags=row.tags)


async def set_monitoring(ctx: Context, payload: SetMonitoring) -> MonitoringSet:
    """Turn detailed monitoring on or off, as the payload's `enabled` says."""
    worker = await _load(ctx, payload.worker_id)
    instance_id = worker.aws_instance_id
    assert instance_id
    enabled = payload.enabled
    await ctx.progress(f"{'Enabling' if enabled else 'Disabling'} detailed monitoring of instance {instance_id}")
    states = await ec2.set_monitoring(ctx.integrations.aws, worker.aws_region, [instance_id], enabled=enabled)
    async with ctx.db.session() as session:
        row = await service.get(session, worker.id, for_update=True)  # not removed under us
        row.detailed_monitoring = enabled
        await service.touch(session, row, WorkerUpdated.of(row, detailed_monitoring=enabled))
    return MonitoringSet(monitoring=states.get(instance_id, "pending" if enabled else "disabling"))


async def refresh(ctx: Context, payload: RefreshWorkers) -> Observed:
    return await refresh_workers(ctx, payload.worker_ids)
