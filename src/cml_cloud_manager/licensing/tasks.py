"""License registration commands. The token lives only in the command payload and is scrubbed after use."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from ..cml.errors import CMLError
from ..events import outbox
from ..jobs.context import Context
from ..storage.models import CommandRow
from ..workers import service as workers
from ..workers.domain import check_action

REDACTED = "***"


async def _scrub(ctx: Context) -> None:
    async with ctx.db.session() as session:
        await session.execute(
            update(CommandRow).where(CommandRow.id == ctx.command_id).values(payload={"token": REDACTED})
        )


async def _run(ctx: Context, payload: dict[str, Any], action: str) -> dict[str, Any]:
    async with ctx.db.session(write=False) as session:
        worker = await workers.get(session, payload["worker_id"])
    check_action("license", worker.status, name=worker.name)
    client = ctx.integrations.cml.client(worker)
    async with ctx.db.session() as session:
        await outbox.append(session, f"license.{action}.started", {"name": worker.name}, worker_id=worker.id)
    try:
        if action == "registration":
            await ctx.progress("Registering the CML license with Smart Licensing")
            await client.register_license(payload["token"], reregister=bool(payload.get("reregister")))
        else:
            await ctx.progress("Deregistering the CML license")
            await client.deregister_license()
        licensing = await client.licensing()
    except CMLError as exc:
        async with ctx.db.session() as session:
            await outbox.append(
                session, f"license.{action}.failed", {"name": worker.name, "error": exc.message}, worker_id=worker.id
            )
        raise
    finally:
        if action == "registration":
            await _scrub(ctx)
    async with ctx.db.session() as session:
        row = await workers.get(session, worker.id)
        row.license_status = licensing.status.value
        await outbox.append(
            session,
            f"license.{action}.completed",
            {"name": worker.name, "license_status": row.license_status},
            worker_id=worker.id,
        )
    return {"license_status": licensing.status.value}


async def register(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    return await _run(ctx, payload, "registration")


async def deregister(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    return await _run(ctx, payload, "deregistration")
