"""Worker commands run by the background worker: start, stop, delete, create, import, tags, monitoring."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ..aws import ec2
from ..aws.errors import InstanceNotFound, ProvisioningFailed
from ..aws.provision import run_instance
from ..aws.types import Instance
from ..errors import Conflict
from ..jobs.commands import enqueue
from ..jobs.context import Context
from ..storage.models import WorkerRow
from . import service
from .domain import WorkerStatus, check_action
from .metrics import refresh_workers
from .sync import TAG_WORKER_ID, instance_fields


async def _load(ctx: Context, worker_id: str) -> WorkerRow:
    async with ctx.db.session(write=False) as session:
        return await service.get(session, worker_id)


async def _power(ctx: Context, worker_id: str, action: str) -> WorkerRow:
    """Start or stop the instance, then record the state EC2 reports; returns the updated row."""
    worker = await _load(ctx, worker_id)
    check_action(action, worker.status, name=worker.name)
    assert worker.aws_instance_id
    verb, done, call = {
        "start": ("Starting", "started", ec2.start_instances),
        "stop": ("Stopping", "stopped", ec2.stop_instances),
    }[action]
    await ctx.progress(f"{verb} instance {worker.aws_instance_id}")
    changes = await call(ctx.integrations.aws, worker.aws_region, [worker.aws_instance_id])
    async with ctx.db.session() as session:
        row = await service.get(session, worker.id)
        if (change := changes.get(worker.aws_instance_id)) is not None:
            await service.set_status(session, row, change.current_state.value, reason=f"{done} by an operator")
        if action == "start":
            row.last_resumed_at = datetime.now(UTC)  # starts the idle-detection snooze
        else:
            row.manual_pauses += 1
    return row


async def start(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    return {"status": (await _power(ctx, payload["worker_id"], "start")).status}


async def stop(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    return {"status": (await _power(ctx, payload["worker_id"], "stop")).status}


async def delete(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Stop managing the worker; with `terminate`, terminate its instance first (a failure keeps the record)."""
    worker = await _load(ctx, payload["worker_id"])
    terminated = False
    if payload.get("terminate") and worker.aws_instance_id and worker.status != WorkerStatus.TERMINATED:
        await ctx.progress(f"Terminating instance {worker.aws_instance_id}")
        try:
            await ec2.terminate_instances(ctx.integrations.aws, worker.aws_region, [worker.aws_instance_id])
            terminated = True
        except InstanceNotFound:
            terminated = True  # already gone: nothing left to pay for
    async with ctx.db.session() as session:
        row = await service.get(session, worker.id)
        await service.remove(session, row, terminated=terminated)
    return {"deleted": worker.id, "terminated": terminated}


async def create(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Provision an instance for a worker record made by the API. The command id is the EC2 idempotency token,
    so a retry after a crash finds the instance it already launched instead of launching a second one."""
    worker = await _load(ctx, payload["worker_id"])
    settings = ctx.settings
    tags = {**settings.cml_instance_tags, **payload.get("tags", {}), TAG_WORKER_ID: worker.id}
    await ctx.progress(f"Launching a {worker.instance_type} instance from {worker.ami_id} in {worker.aws_region}")
    try:
        instance = await run_instance(
            ctx.integrations.aws,
            worker.aws_region,
            ami_id=worker.ami_id,
            instance_type=worker.instance_type,
            subnet_id=payload.get("subnet_id") or settings.cml_subnet_id or None,
            security_group_ids=payload.get("security_group_ids") or settings.cml_security_group_ids,
            key_name=payload.get("key_name") or settings.cml_key_name or None,
            tags=tags,
            name=worker.name,
            client_token=ctx.command_id,
        )
    except ProvisioningFailed as exc:
        async with ctx.db.session() as session:
            row = await service.get(session, worker.id)
            row.error = exc.message
            await service.set_status(session, row, WorkerStatus.FAILED, reason=exc.message)
        raise
    await ctx.progress(f"Instance {instance.id} launched")
    async with ctx.db.session() as session:
        row = await service.get(session, worker.id)
        await _adopt(session, row, instance)
    return {"instance_id": instance.id, "status": row.status}


async def _adopt(session: AsyncSession, row: WorkerRow, instance: Instance) -> None:
    row.aws_instance_id = instance.id
    for name, value in instance_fields(instance).items():
        setattr(row, name, value)
    await service.set_status(session, row, instance.state.value, reason="instance launched")
    await service.touch(session, row, "worker.updated", {"aws_instance_id": instance.id})


async def import_instance(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    region, instance_id = payload["region"], payload["instance_id"]
    await ctx.progress(f"Reading instance {instance_id} in {region}")
    instance = await ec2.get_instance(ctx.integrations.aws, region, instance_id)
    async with ctx.db.session() as session:
        worker = await import_one(session, instance, reason="imported by an operator")
        await enqueue(session, "worker.refresh", {"worker_ids": [worker.id]}, worker_id=worker.id)
    return {"worker_id": worker.id, "status": worker.status}


async def import_one(session: AsyncSession, instance: Instance, *, reason: str, ami_name: str = "") -> WorkerRow:
    if await service.by_instance(session, instance.id) is not None:
        raise Conflict(f"Instance {instance.id} is already managed")
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


async def set_tags(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    worker = await _load(ctx, payload["worker_id"])
    assert worker.aws_instance_id
    add: dict[str, str] = payload.get("set", {})
    remove: list[str] = payload.get("remove", [])
    if add:
        await ec2.create_tags(ctx.integrations.aws, worker.aws_region, [worker.aws_instance_id], add)
    if remove:
        await ec2.delete_tags(ctx.integrations.aws, worker.aws_region, [worker.aws_instance_id], remove)
    async with ctx.db.session() as session:
        row = await service.get(session, worker.id)
        row.tags = {**{k: v for k, v in row.tags.items() if k not in remove}, **add}
        await service.touch(session, row, "worker.updated", {"tags": row.tags})
    return {"tags": row.tags}


async def enable_monitoring(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    worker = await _load(ctx, payload["worker_id"])
    assert worker.aws_instance_id
    states = await ec2.monitor_instances(ctx.integrations.aws, worker.aws_region, [worker.aws_instance_id])
    async with ctx.db.session() as session:
        row = await service.get(session, worker.id)
        row.detailed_monitoring = True
        await service.touch(session, row, "worker.updated", {"detailed_monitoring": True})
    return {"monitoring": states.get(worker.aws_instance_id, "pending")}


async def refresh(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    return await refresh_workers(ctx, payload.get("worker_ids") or [payload["worker_id"]])
