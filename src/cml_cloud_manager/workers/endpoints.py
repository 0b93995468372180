"""`/api/workers`: the fleet. Reads answer from the database; actions queue commands for the worker."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from ..apps.deps import DatabaseDep, SettingsDep
from ..jobs.endpoints import queue
from . import service
from .domain import WorkerStatus, check_action
from .schemas import CommandAccepted, WorkerOut, WorkerPage

router = APIRouter(prefix="/api/workers", tags=["workers"])
ACCEPTED: dict[int | str, dict[str, Any]] = {202: {"model": CommandAccepted, "description": "Queued as a command"}}


@router.get("", summary="List workers", response_model=WorkerPage)
async def list_workers(
    db: DatabaseDep,
    region: str | None = None,
    status: WorkerStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> WorkerPage:
    async with db.session(write=False) as session:
        rows, total = await service.list_page(session, region=region, status=status, limit=limit, offset=offset)
        items = [WorkerOut.model_validate(row) for row in rows]
    return WorkerPage(items=items, total=total, limit=limit, offset=offset)


@router.get("/{worker_id}", summary="One worker", response_model=WorkerOut)
async def get_worker(worker_id: str, db: DatabaseDep) -> WorkerOut:
    async with db.session(write=False) as session:
        return WorkerOut.model_validate(await service.get(session, worker_id))


async def _action(db: DatabaseDep, settings: SettingsDep, worker_id: str, action: str) -> JSONResponse:
    async with db.session() as session:
        worker = await service.get(session, worker_id)
        check_action(action, worker.status, name=worker.name)
        return await queue(
            db, settings, f"worker.{action}", {"worker_id": worker_id}, session=session, worker_id=worker_id
        )


@router.post("/{worker_id}/start", summary="Start the EC2 instance", status_code=202, responses=ACCEPTED)
async def start_worker(worker_id: str, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    return await _action(db, settings, worker_id, "start")


@router.post("/{worker_id}/stop", summary="Stop the EC2 instance", status_code=202, responses=ACCEPTED)
async def stop_worker(worker_id: str, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    return await _action(db, settings, worker_id, "stop")
