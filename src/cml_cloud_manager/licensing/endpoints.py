"""`/api/workers/{id}/license`: register and deregister the CML license (as commands)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ..auth.guard import needs
from ..auth.json_body import JsonBodyRoute
from ..auth.roles import Role
from ..jobs.queue import ACCEPTED
from ..web.deps import DatabaseDep, SettingsDep
from ..workers import service as workers
from .schemas import DeregisterLicense, RegisterLicense, Registration

router = APIRouter(
    prefix="/api/workers/{worker_id}/license",
    tags=["license"],
    dependencies=needs(Role.ADMIN),
    route_class=JsonBodyRoute,
)


@router.post("", summary="Register the CML license", status_code=202, responses=ACCEPTED)
async def register(worker_id: str, body: Registration, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    # The token goes in the command's secret, never in its payload (which is kept and shown for HISTORY_DAYS).
    token = body.token.get_secret_value().strip()
    payload = RegisterLicense(worker_id=worker_id, reregister=body.reregister)
    return await workers.queue_action(db, settings, worker_id, "license", payload, secret=token)


@router.delete("", summary="Deregister the CML license", status_code=202, responses=ACCEPTED)
async def deregister(worker_id: str, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    return await workers.queue_action(db, settings, worker_id, "license", DeregisterLicense(worker_id=worker_id))
