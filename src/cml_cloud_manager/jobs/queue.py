"""Queueing a command from a request: stored in the caller's transaction, answered 202 with where to follow it."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from ..config import Settings
from ..storage.db import Database
from .commands import enqueue
from .context import CommandPayload
from .processes import worker_liveness


class CommandAccepted(BaseModel):
    command_id: str
    status: str
    worker_alive: bool
    message: str


# What a route that queues a command declares: its 202, the body, and where to follow the command.
ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {
        "model": CommandAccepted,
        "description": "Queued as a command",
        "headers": {"Location": {"description": "/api/commands/{command_id}", "schema": {"type": "string"}}},
    }
}


def accepted(body: CommandAccepted) -> JSONResponse:
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": f"/api/commands/{body.command_id}"})


async def queue(
    db: Database,
    settings: Settings,
    payload: CommandPayload,
    *,
    session: AsyncSession,
    worker_id: str | None = None,
    requested_by: str = "",
    secret: str | None = None,
) -> JSONResponse:
    """Store the command in the caller's transaction and answer 202, saying whether a worker will pick it up."""
    row = await enqueue(session, payload, worker_id=worker_id, requested_by=requested_by, secret=secret)
    liveness = await worker_liveness(session, now=await db.now(session), alive_seconds=settings.worker_alive_seconds)
    message = (
        "Queued; a worker will run it shortly."
        if liveness.alive
        else "Queued, but no worker process is alive: it will run when a worker starts."
    )
    return accepted(CommandAccepted(command_id=row.id, status=row.status, worker_alive=liveness.alive, message=message))
