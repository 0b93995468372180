"""License registration commands. The token is the command's secret (`jobs.commands`), never in its payload;
the queue deletes it when the command ends, whatever the outcome."""

from __future__ import annotations

from ..cml.errors import CMLError
from ..events import outbox
from ..jobs import commands
from ..jobs.context import Context
from ..workers import service as workers
from ..workers.domain import check_action
from .schemas import DeregisterLicense, LicenseReport, RegisterLicense


async def _run(ctx: Context, payload: RegisterLicense | DeregisterLicense) -> LicenseReport:
    action = "registration" if isinstance(payload, RegisterLicense) else "deregistration"
    async with ctx.db.session(write=False) as session:
        worker = await workers.get(session, payload.worker_id)
    check_action("license", worker.status, name=worker.name)
    client = ctx.integrations.cml.client(worker)
    # Read before anything is announced: a command whose token is gone fails without a "started" left open.
    token = await commands.secret(ctx) if isinstance(payload, RegisterLicense) else ""
    async with ctx.db.session() as session:
        await outbox.append(session, f"license.{action}.started", {"name": worker.name}, worker_id=worker.id)
    try:
        if isinstance(payload, RegisterLicense):
            await ctx.progress("Registering the CML license with Smart Licensing")
            await client.register_license(token, reregister=payload.reregister)
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
    async with ctx.db.session() as session:
        row = await workers.get(session, worker.id)
        row.license_status = licensing.status.value
        await outbox.append(
            session,
            f"license.{action}.completed",
            {"name": worker.name, "license_status": row.license_status},
            worker_id=worker.id,
        )
    return LicenseReport(license_status=licensing.status.value)


async def register(ctx: Context, payload: RegisterLicense) -> LicenseReport:
    return await _run(ctx, payload)


async def deregister(ctx: Context, payload: DeregisterLicense) -> LicenseReport:
    return await _run(ctx, payload)
