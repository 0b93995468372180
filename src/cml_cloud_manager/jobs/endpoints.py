"""Commands over HTTP: `GET /api/commands/{id}` follows one that `jobs/queue.py` queued (202 with its id)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from ..auth.guard import needs
from ..auth.roles import Role
from ..errors import NotFound
from ..storage.models import CommandRow
from ..web.deps import DatabaseDep
from ..web.paging import Limit, Offset, Page, rows_page

router = APIRouter(prefix="/api/commands", tags=["commands"], dependencies=needs(Role.VIEWER))


class CommandNotFound(NotFound):
    code = "command_not_found"


class CommandOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    type: str
    status: str
    worker_id: str | None
    progress: str
    result: dict[str, Any] | None = Field(description="What the command reported, by type")
    error: str
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@router.get("/{command_id}", summary="A command's state, progress and result")
async def get_command(command_id: str, db: DatabaseDep) -> CommandOut:
    async with db.session(write=False) as session:
        row = await session.get(CommandRow, command_id)
        if row is None:
            raise CommandNotFound(f"No command with id '{command_id}'")
        return CommandOut.model_validate(row)


@router.get("", summary="Recent commands, newest first")
async def list_commands(
    db: DatabaseDep, limit: Limit = 100, offset: Offset = 0, worker_id: str | None = None, status: str | None = None
) -> Page[CommandOut]:
    query = select(CommandRow).order_by(CommandRow.created_at.desc(), CommandRow.id)
    if worker_id:
        query = query.where(CommandRow.worker_id == worker_id)
    if status:
        query = query.where(CommandRow.status == status)
    async with db.session(write=False) as session:
        rows, total = await rows_page(session, query, limit=limit, offset=offset)
    items = [CommandOut.model_validate(row) for row in rows]
    return Page[CommandOut](items=items, total=total, limit=limit, offset=offset)
