"""`/api/workers/{id}/labs`: labs on a worker. Operations are commands; download asks CML directly."""

from __future__ import annotations

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from ..auth.guard import needs
from ..auth.roles import Role
from ..errors import AppError, BadRequest
from ..jobs.integrations import IntegrationsDep
from ..jobs.queue import ACCEPTED
from ..storage.models import WorkerRow
from ..web.deps import DatabaseDep, SettingsDep
from ..web.paging import Limit, Offset, Page, page_of
from ..workers import service as workers
from ..workers.domain import check_action
from ..workers.schemas import RefreshLabs
from . import service
from .domain import check_lab_action
from .schemas import ImportLab, LabAction, LabOperation, LabOut

router = APIRouter(prefix="/api/workers/{worker_id}/labs", tags=["labs"], dependencies=needs(Role.VIEWER))
MAX_TOPOLOGY_BYTES = 5 * 1024 * 1024


class TooLarge(AppError):
    status_code = 413
    code = "payload_too_large"


@router.get("", summary="Labs on the worker (as of the last refresh), by title")
async def list_labs(worker_id: str, db: DatabaseDep, limit: Limit = 100, offset: Offset = 0) -> Page[LabOut]:
    async with db.session(write=False) as session:
        await workers.get(session, worker_id)
        labs = [LabOut.model_validate(row) for row in await service.list_for(session, worker_id)]
    return page_of(labs, limit=limit, offset=offset)


@router.post(
    "/refresh",
    summary="Refresh the worker's labs from CML now",
    status_code=202,
    responses=ACCEPTED,
    dependencies=needs(Role.OPERATOR),
)
async def refresh(worker_id: str, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    return await workers.queue_action(db, settings, worker_id, "operate-labs", RefreshLabs(worker_id=worker_id))


async def _lab_action(
    db: DatabaseDep, settings: SettingsDep, worker_id: str, lab_id: str, action: LabOperation
) -> JSONResponse:
    async def checked_lab(session: AsyncSession, worker: WorkerRow) -> LabAction:
        lab = await service.get(session, worker_id, lab_id)
        check_lab_action(action, lab.state, title=lab.title)
        return LabAction(worker_id=worker_id, lab_id=lab.id, action=action)

    return await workers.queue_action(db, settings, worker_id, "operate-labs", checked_lab)


@router.post(
    "/{lab_id}/start", summary="Start a lab", status_code=202, responses=ACCEPTED, dependencies=needs(Role.OPERATOR)
)
async def start_lab(worker_id: str, lab_id: str, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    return await _lab_action(db, settings, worker_id, lab_id, "start")


@router.post(
    "/{lab_id}/stop", summary="Stop a lab", status_code=202, responses=ACCEPTED, dependencies=needs(Role.OPERATOR)
)
async def stop_lab(worker_id: str, lab_id: str, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    return await _lab_action(db, settings, worker_id, lab_id, "stop")


@router.post(
    "/{lab_id}/wipe",
    summary="Wipe a stopped lab",
    status_code=202,
    responses=ACCEPTED,
    dependencies=needs(Role.OPERATOR),
)
async def wipe_lab(worker_id: str, lab_id: str, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    return await _lab_action(db, settings, worker_id, lab_id, "wipe")


@router.delete(
    "/{lab_id}",
    summary="Delete a stopped or wiped lab",
    status_code=202,
    responses=ACCEPTED,
    dependencies=needs(Role.OPERATOR),
)
async def delete_lab(worker_id: str, lab_id: str, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    return await _lab_action(db, settings, worker_id, lab_id, "delete")


@router.get(
    "/{lab_id}/download",
    summary="The lab's topology as YAML",
    response_class=Response,
    responses={
        200: {
            "description": "CML's topology YAML, as a file named for the lab",
            "content": {"application/x-yaml": {"schema": {"type": "string"}}},
            "headers": {"Content-Disposition": {"schema": {"type": "string"}}},
        }
    },
    dependencies=needs(Role.OPERATOR),
)
async def download_lab(worker_id: str, lab_id: str, db: DatabaseDep, integrations: IntegrationsDep) -> Response:
    async with db.session(write=False) as session:
        worker = await workers.get(session, worker_id)
        check_action("operate-labs", worker.status, name=worker.name)
        lab = await service.get(session, worker_id, lab_id)
    text = await integrations.cml.client(worker).download_lab(lab.cml_lab_id)
    filename = "".join(c if c.isalnum() or c in "-_." else "_" for c in lab.title) or lab.cml_lab_id
    return Response(
        text,
        media_type="application/x-yaml",
        headers={"Content-Disposition": f'attachment; filename="{filename}.yaml"'},
    )


@router.post(
    "/import",
    summary="Import a lab from CML topology YAML (request body)",
    status_code=202,
    responses=ACCEPTED,
    openapi_extra={
        "requestBody": {"content": {"application/x-yaml": {"schema": {"type": "string"}}}, "required": True}
    },
    dependencies=needs(Role.OPERATOR),
)
async def import_lab(
    worker_id: str, request: Request, db: DatabaseDep, settings: SettingsDep, title: str | None = None
) -> JSONResponse:
    body = await request.body()
    if len(body) > MAX_TOPOLOGY_BYTES:
        raise TooLarge(f"The topology is {len(body)} bytes; the limit is {MAX_TOPOLOGY_BYTES} bytes")
    try:
        text = body.decode()
        topology = yaml.safe_load(text)
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BadRequest(f"The body is not a YAML topology: {exc}") from None
    if not isinstance(topology, dict) or "nodes" not in topology:
        raise BadRequest("The YAML is not a CML topology (expected a mapping with 'nodes')")
    payload = ImportLab(worker_id=worker_id, yaml=text, title=title)
    return await workers.queue_action(db, settings, worker_id, "operate-labs", payload)
