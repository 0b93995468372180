"""License registration commands. The token is the command's secret (`jobs.commands`), never in its payload;
the queue deletes it when the command ends, whatever the outcome."""

from __future__ import annotations

from ..cml.errors import CMLError
from ..events import outbox
from ..jobs import commands
from ..jobs.context import Context
from ..workers import service as workers
from ..workers.domain import check_action
from .events import Action, LicenseCompleted, LicenseFailed, LicenseStarted
from .schemas import DeregisterLicense, LicenseReport, RegisterLicense


async def _run(ctx: Context, payload: RegisterLicense | DeregisterLicense) -> LicenseReport:
    action: Action = "registration" if isinstance(payload, RegisterLicense) else "deregistration"
    async with ctx.db.session(write=False) as session:
        worker = await workers.get(session, payload.worker_id)
    check_action("license", worker.status, name=worker.name)
    client = ctx.integrations.cml.client(worker)
    # Read before anything is announced: a command whose token is gone fails without a "started" left open.
    token = await commands.secret(ctx) if isinstance(payload, RegisterLicense) else ""
    async with ctx.db.session() as session:
        started = LicenseStarted(name=worker.name)
        await outbox.append(session, started, type=f"license.{action}.started", worker_id=worker.id)
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
            failed = LicenseFailed(name=worker.name, error=exc.message)
            await outbox.append(session, failed, type=f"license.{action}.failed", worker_id=worker.id)
        raise
    async with ctx.db.session() as session:
        row = await workers.get(session, worker.id)
        row.license_status = licensing.status.value
        completed = LicenseCompleted(name=worker.name, license_status=row.license_status)
        await outbox.append(session, completed, type=f"license.{action}.completed", worker_id=worker.id)
    return LicenseReport(license_status=licensing.status.value)


async def register(ctx: Context, payload: RegisterLicense) -> LicenseReport:
    return await _run(ctx, payload)


async def deregister(ctx: Context, payload: DeregisterLicense) -> LicenseReport:
    return await _run(ctx, payload)
