"""The `labs-refresh` job and lab commands (start, stop, wipe, delete, import, refresh)."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import select

from ..cml.errors import CMLError
from ..jobs.context import Context
from ..storage.models import WorkerRow
from ..workers import service as workers
from ..workers.domain import ServiceStatus, WorkerStatus, check_action
from ..workers.events import WorkerMetricsUpdated
from ..workers.schemas import RefreshLabs
from . import service
from .domain import check_lab_action
from .schemas import ImportLab, LabAction, LabDeleted, LabImported, LabsRefreshRun, LabsSynced, LabStateSet

log = logging.getLogger(__name__)


async def refresh_worker_labs(ctx: Context, worker: WorkerRow) -> LabsSynced:
    labs = await ctx.integrations.cml.client(worker).labs_with_details()
    async with ctx.db.fan_out_session() as session:
        # Locked first: a removal of the worker meanwhile is waited for (then WorkerNotFound, not a foreign key
        # violation), and two refreshes of one worker (the job's, a command's) do not insert the same lab twice.
        row = await workers.get(session, worker.id, for_update=True)
        result = await service.sync(session, worker.id, labs)
        if row.labs_count != len(labs):
            row.labs_count = len(labs)
            await workers.touch(session, row, WorkerMetricsUpdated.of(row, labs_count=len(labs)))
    return result


async def labs_refresh(ctx: Context) -> LabsRefreshRun:
    async with ctx.db.session(write=False) as session:
        available = (
            await session.scalars(
                select(WorkerRow).where(
                    WorkerRow.status == WorkerStatus.RUNNING, WorkerRow.service_status == ServiceStatus.AVAILABLE
                )
            )
        ).all()
    slots = asyncio.Semaphore(ctx.settings.metrics_concurrency)
    failures: dict[str, str] = {}
    synced: list[LabsSynced] = []

    deadline = ctx.host_deadline()

    async def one(worker: WorkerRow) -> None:
        async with slots:
            try:
                async with asyncio.timeout_at(deadline):
                    synced.append(await refresh_worker_labs(ctx, worker))
            except CMLError as exc:
                failures[worker.id] = exc.message
                log.warning("labs-refresh: %s: %s", worker.name, exc.message)
            except TimeoutError:
                failures[worker.id] = "CML did not answer within this run's time budget"
            except workers.WorkerNotFound:
                log.info("labs-refresh: %s left the fleet during the run", worker.name)

    await asyncio.gather(*(one(worker) for worker in available))
    return LabsRefreshRun(
        workers=len(available),
        added=sum(s.added for s in synced),
        updated=sum(s.updated for s in synced),
        removed=sum(s.removed for s in synced),
        failed=failures,
    )


async def _worker(ctx: Context, worker_id: str) -> WorkerRow:
    async with ctx.db.session(write=False) as session:
        worker = await workers.get(session, worker_id)
    check_action("operate-labs", worker.status, name=worker.name)
    return worker


async def lab_action(ctx: Context, payload: LabAction) -> LabStateSet | LabDeleted:
    action = payload.action
    worker = await _worker(ctx, payload.worker_id)
    async with ctx.db.session(write=False) as session:
        lab = await service.get(session, worker.id, payload.lab_id)
    client = ctx.integrations.cml.client(worker)
    # CML is the authority on the current state; our record may be one refresh behind.
    current = (await client.lab_state(lab.cml_lab_id)).value
    target = check_lab_action(action, current, title=lab.title)
    await ctx.progress(f"{action.capitalize()} lab '{lab.title}'")
    operation = {"start": client.start_lab, "stop": client.stop_lab, "wipe": client.wipe_lab}.get(action)
    if operation is None:
        await client.delete_lab(lab.cml_lab_id)
        labs = await client.labs_with_details()
        async with ctx.db.session() as session:
            await service.sync(session, worker.id, labs)
        return LabDeleted(lab_id=lab.id)
    assert target is not None
    await operation(lab.cml_lab_id)
    async with ctx.db.session() as session:
        row = await service.get(session, worker.id, lab.id)
        await service.set_state(session, row, target.value, reason=f"{action} by an operator")
    return LabStateSet(lab_id=lab.id, state=target.value)


async def import_lab(ctx: Context, payload: ImportLab) -> LabImported:
    worker = await _worker(ctx, payload.worker_id)
    client = ctx.integrations.cml.client(worker)
    await ctx.progress("Uploading the lab topology to CML")
    imported = await client.import_lab(payload.yaml, title=payload.title)
    labs = await client.labs_with_details()
    async with ctx.db.session() as session:
        await service.sync(session, worker.id, labs)
        row = await service.get(session, worker.id, imported.id)
    return LabImported(lab_id=row.id, cml_lab_id=imported.id, title=row.title, warnings=list(imported.warnings))


async def refresh_labs(ctx: Context, payload: RefreshLabs) -> LabsSynced:
    worker = await _worker(ctx, payload.worker_id)
    return await refresh_worker_labs(ctx, worker)
