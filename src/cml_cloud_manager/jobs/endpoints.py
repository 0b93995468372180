"""Commands over HTTP: queueing answers 202 with an id; `GET /api/commands/{id}` follows it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..apps.deps import DatabaseDep
from ..auth.guard import needs
from ..auth.roles import Role
from ..config import Settings
from ..errors import NotFound
from ..health.service import worker_liveness
from ..storage.db import Database
from ..storage.models import CommandRow
from .commands import describe, enqueue

router = APIRouter(prefix="/api/commands", tags=["commands"], dependencies=needs(Role.VIEWER))


class CommandNotFound(NotFound):
    code = "command_not_found"


async def queue(
    db: Database,
    settings: Settings,
    type: str,
    payload: dict[str, Any],
    *,
    session: AsyncSession,
    worker_id: str | None = None,
    requested_by: str = "",
) -> JSONResponse:
    """Store the command in the caller's transaction and answer 202, saying whether a worker will pick it up."""
    row = await enqueue(session, type, payload, worker_id=worker_id, requested_by=requested_by)
    liveness = await worker_liveness(session, now=await db.now(session), alive_seconds=settings.worker_alive_seconds)
    message = (
        "Queued; a worker will run it shortly."
        if liveness["alive"]
        else "Queued, but no worker process is alive: it will run when a worker starts."
    )
    body = {"command_id": row.id, "status": row.status, "worker_alive": liveness["alive"], "message": message}
    return JSONResponse(body, status_code=202, headers={"Location": f"/api/commands/{row.id}"})


@router.get("/{command_id}", summary="A command's state, progress and result")
async def get_command(command_id: str, db: DatabaseDep) -> dict[str, Any]:
    async with db.session(write=False) as session:
        row = await session.get(CommandRow, command_id)
        if row is None:
            raise CommandNotFound(f"No command with id '{command_id}'")
        return describe(row)


@router.get("", summary="Recent commands, newest first")
async def list_commands(
    db: DatabaseDep,
    worker_id: str | None = None,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:
    query = select(CommandRow).order_by(CommandRow.created_at.desc()).limit(limit)
    if worker_id:
        query = query.where(CommandRow.worker_id == worker_id)
    if status:
        query = query.where(CommandRow.status == status)
    async with db.session(write=False) as session:
        return [describe(row) for row in (await session.scalars(query)).all()]
