"""Finding CML instances by AMI name: the `auto-import` job and the "import all matching" command."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import select

from ..aws import ec2
from ..aws.types import Image, Instance
from ..errors import Conflict
from ..jobs.commands import enqueue
from ..jobs.context import Context
from ..storage.models import WorkerRow
from . import exclusions, service
from .domain import WorkerStatus
from .schemas import ImportByAmi, ImportRun, RefreshWorkers
from .sync import TAG_WORKER_ID
from .tasks import import_one

log = logging.getLogger(__name__)


async def _matching(ctx: Context, region: str, pattern: str) -> tuple[list[Instance], dict[str, str]]:
    aws = ctx.integrations.aws
    owners = ctx.settings.cml_ami_owners or None
    images: list[Image] = await ec2.describe_images(aws, region, owners=owners, name_pattern=pattern)
    names = {image.id: image.name or "" for image in images}
    if not names:
        return [], names
    instances = await ec2.describe_instances(
        aws,
        region,
        filters={
            "image-id": list(names),
            # Not `shutting-down`: an instance on its way out (one being terminated) is not worth importing.
            "instance-state-name": ["pending", "running", "stopping", "stopped"],
        },
    )
    return instances, names


async def import_matching(ctx: Context, regions: list[str], pattern: str, *, reason: str) -> ImportRun:
    """Import every instance from an AMI matching `pattern`; with the full picture of a region, also mark
    managed workers whose instance no longer exists as terminated."""
    imported: list[str] = []
    vanished: list[str] = []
    failed: dict[str, str] = {}
    results = await asyncio.gather(*(_matching(ctx, r, pattern) for r in regions), return_exceptions=True)
    for region, result in zip(regions, results, strict=True):
        if isinstance(result, BaseException):
            failed[region] = str(result)
            continue
        instances, ami_names = result
        async with ctx.db.session() as session:
            fresh = []
            skipped = await exclusions.excluded(session, [i.id for i in instances])
            for instance in instances:
                if instance.id in skipped or await service.by_instance(session, instance.id) is not None:
                    continue  # removed from the fleet by an operator, or managed already
                owner = instance.tags.get(TAG_WORKER_ID)
                if owner and await session.get(WorkerRow, owner) is not None:
                    continue  # launched by a create command, which adopts it into its own worker
                try:
                    row = await import_one(session, instance, reason=reason, ami_name=ami_names[instance.image_id])
                except Conflict:  # removed from the fleet (so excluded) since the checks above: leave it
                    continue
                fresh.append(row.id)
            if fresh:  # metrics and CML state now, not at the next worker-metrics tick
                await enqueue(session, RefreshWorkers(worker_ids=fresh))
        imported += fresh
        vanished += await _mark_vanished(ctx, region)
    if imported or vanished:
        log.info("auto-import: %d imported, %d marked terminated", len(imported), len(vanished))
    return ImportRun(imported=imported, terminated=vanished, failed_regions=failed)


async def _mark_vanished(ctx: Context, region: str) -> list[str]:
    async with ctx.db.session(write=False) as session:
        rows = (
            await session.scalars(
                select(WorkerRow).where(
                    WorkerRow.aws_region == region,
                    WorkerRow.status != WorkerStatus.TERMINATED,
                    WorkerRow.aws_instance_id.is_not(None),
                )
            )
        ).all()
    ids = [row.aws_instance_id for row in rows if row.aws_instance_id]
    if not ids:
        return []
    live = await ec2.describe_instances(ctx.integrations.aws, region, instance_ids=ids, missing_ok=True)
    gone = {i.id for i in live if i.state.value == WorkerStatus.TERMINATED} | (set(ids) - {i.id for i in live})
    marked: list[str] = []
    async with ctx.db.session() as session:
        for row in rows:
            if row.aws_instance_id in gone:
                current = await service.get(session, row.id)
                if await service.set_status(session, current, WorkerStatus.TERMINATED, reason="instance vanished"):
                    marked.append(row.id)
    return marked


async def auto_import(ctx: Context) -> ImportRun:
    return await import_matching(ctx, ctx.settings.aws_regions, ctx.settings.cml_ami_name_pattern, reason="auto-import")


async def import_by_ami(ctx: Context, payload: ImportByAmi) -> ImportRun:
    regions = [payload.region] if payload.region else ctx.settings.aws_regions
    await ctx.progress(f"Looking for instances from AMIs named {payload.ami_name_pattern!r}")
    return await import_matching(ctx, regions, payload.ami_name_pattern, reason="imported by AMI name")
