"""`/api/workers/{id}/license`: register and deregister the CML license (as commands)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from ..apps.deps import DatabaseDep, SettingsDep
from ..auth.guard import needs
from ..auth.roles import Role
from ..jobs.endpoints import queue
from ..workers import service as workers
from ..workers.domain import check_action

router = APIRouter(prefix="/api/workers/{worker_id}/license", tags=["license"], dependencies=needs(Role.ADMIN))


class Registration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: SecretStr = Field(description="Smart Licensing registration token; never logged or echoed")
    reregister: bool = False


async def _queue(
    db: DatabaseDep, settings: SettingsDep, worker_id: str, type: str, payload: dict[str, object]
) -> JSONResponse:
    async with db.session() as session:
        worker = await workers.get(session, worker_id)
        check_action("license", worker.status, name=worker.name)
        return await queue(
            db, settings, type, {"worker_id": worker_id, **payload}, session=session, worker_id=worker_id
        )


@router.post("", summary="Register the CML license", status_code=202)
async def register(worker_id: str, body: Registration, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    token = body.token.get_secret_value().strip()
    payload = {"token": token, "reregister": body.reregister}
    return await _queue(db, settings, worker_id, "license.register", payload)


@router.delete("", summary="Deregister the CML license", status_code=202)
async def deregister(worker_id: str, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    return await _queue(db, settings, worker_id, "license.deregister", {})
