"""The `labs-refresh` job and lab commands (start, stop, wipe, delete, import, refresh)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import select

from ..cml.errors import CMLError
from ..jobs.context import Context
from ..storage.models import WorkerRow
from ..workers import service as workers
from ..workers.domain import ServiceStatus, WorkerStatus, check_action
from . import service
from .domain import check_lab_action

log = logging.getLogger(__name__)


async def refresh_worker_labs(ctx: Context, worker: WorkerRow) -> dict[str, int]:
    labs = await ctx.integrations.cml.client(worker).labs_with_details()
    async with ctx.db.session() as session:
        result = await service.sync(session, worker.id, labs)
        row = await workers.get(session, worker.id)
        if row.labs_count != len(labs):
            row.labs_count = len(labs)
            await workers.touch(session, row, "worker.metrics.updated", {"labs_count": len(labs)})
    return result


async def labs_refresh(ctx: Context) -> dict[str, Any]:
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
    totals = {"added": 0, "updated": 0, "removed": 0}

    deadline = ctx.host_deadline()

    async def one(worker: WorkerRow) -> None:
        async with slots:
            try:
                async with asyncio.timeout_at(deadline):
                    result = await refresh_worker_labs(ctx, worker)
                for key, value in result.items():
                    totals[key] += value
            except CMLError as exc:
                failures[worker.id] = exc.message
                log.warning("labs-refresh: %s: %s", worker.name, exc.message)
            except TimeoutError:
                failures[worker.id] = "CML did not answer within this run's time budget"

    await asyncio.gather(*(one(worker) for worker in available))
    return {"workers": len(available), **totals, "failed": failures}


async def _worker(ctx: Context, worker_id: str) -> WorkerRow:
    async with ctx.db.session(write=False) as session:
        worker = await workers.get(session, worker_id)
    check_action("operate-labs", worker.status, name=worker.name)
    return worker


async def lab_action(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    action: str = payload["action"]
    worker = await _worker(ctx, payload["worker_id"])
    async with ctx.db.session(write=False) as session:
        lab = await service.get(session, worker.id, payload["lab_id"])
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
        return {"lab_id": lab.id, "deleted": True}
    assert target is not None
    await operation(lab.cml_lab_id)
    async with ctx.db.session() as session:
        row = await service.get(session, worker.id, lab.id)
        await service.set_state(session, row, target.value, reason=f"{action} by an operator")
    return {"lab_id": lab.id, "state": target.value}


async def import_lab(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    worker = await _worker(ctx, payload["worker_id"])
    client = ctx.integrations.cml.client(worker)
    await ctx.progress("Uploading the lab topology to CML")
    imported = await client.import_lab(payload["yaml"], title=payload.get("title"))
    labs = await client.labs_with_details()
    async with ctx.db.session() as session:
        await service.sync(session, worker.id, labs)
        row = await service.get(session, worker.id, imported.id)
    return {"lab_id": row.id, "cml_lab_id": imported.id, "title": row.title, "warnings": list(imported.warnings)}


async def refresh_labs(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    worker = await _worker(ctx, payload["worker_id"])
    return await refresh_worker_labs(ctx, worker)
