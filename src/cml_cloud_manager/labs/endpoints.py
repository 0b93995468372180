"""`/api/workers/{id}/labs`: labs on a worker. Operations are commands; download asks CML directly."""

from __future__ import annotations

from typing import Any

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ..apps.deps import DatabaseDep, IntegrationsDep, SettingsDep
from ..auth.guard import needs
from ..auth.roles import Role
from ..errors import AppError, BadRequest
from ..jobs.endpoints import queue
from ..workers import service as workers
from ..workers.domain import check_action
from . import service
from .domain import check_lab_action

router = APIRouter(prefix="/api/workers/{worker_id}/labs", tags=["labs"], dependencies=needs(Role.VIEWER))
MAX_TOPOLOGY_BYTES = 5 * 1024 * 1024


class TooLarge(AppError):
    status_code = 413
    code = "payload_too_large"


@router.get("", summary="Labs on the worker (as of the last refresh)")
async def list_labs(worker_id: str, db: DatabaseDep) -> list[dict[str, Any]]:
    async with db.session(write=False) as session:
        await workers.get(session, worker_id)
        return [service.public(row) for row in await service.list_for(session, worker_id)]


@router.post(
    "/refresh", summary="Refresh the worker's labs from CML now", status_code=202, dependencies=needs(Role.OPERATOR)
)
async def refresh(worker_id: str, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    async with db.session() as session:
        worker = await workers.get(session, worker_id)
        check_action("operate-labs", worker.status, name=worker.name)
        return await queue(db, settings, "labs.refresh", {"worker_id": worker_id}, session=session, worker_id=worker_id)


async def _lab_action(db: DatabaseDep, settings: SettingsDep, worker_id: str, lab_id: str, action: str) -> JSONResponse:
    async with db.session() as session:
        worker = await workers.get(session, worker_id)
        check_action("operate-labs", worker.status, name=worker.name)
        lab = await service.get(session, worker_id, lab_id)
        check_lab_action(action, lab.state, title=lab.title)
        payload = {"worker_id": worker_id, "lab_id": lab.id, "action": action}
        return await queue(db, settings, "lab.action", payload, session=session, worker_id=worker_id)


@router.post("/{lab_id}/start", summary="Start a lab", status_code=202, dependencies=needs(Role.OPERATOR))
async def start_lab(worker_id: str, lab_id: str, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    return await _lab_action(db, settings, worker_id, lab_id, "start")


@router.post("/{lab_id}/stop", summary="Stop a lab", status_code=202, dependencies=needs(Role.OPERATOR))
async def stop_lab(worker_id: str, lab_id: str, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    return await _lab_action(db, settings, worker_id, lab_id, "stop")


@router.post("/{lab_id}/wipe", summary="Wipe a stopped lab", status_code=202, dependencies=needs(Role.OPERATOR))
async def wipe_lab(worker_id: str, lab_id: str, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    return await _lab_action(db, settings, worker_id, lab_id, "wipe")


@router.delete("/{lab_id}", summary="Delete a stopped or wiped lab", status_code=202, dependencies=needs(Role.OPERATOR))
async def delete_lab(worker_id: str, lab_id: str, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    return await _lab_action(db, settings, worker_id, lab_id, "delete")


@router.get(
    "/{lab_id}/download",
    summary="The lab's topology as YAML",
    response_class=Response,
    responses={200: {"content": {"application/x-yaml": {}}}},
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
    async with db.session() as session:
        worker = await workers.get(session, worker_id)
        check_action("operate-labs", worker.status, name=worker.name)
        payload = {"worker_id": worker_id, "yaml": text, "title": title}
        return await queue(db, settings, "lab.import", payload, session=session, worker_id=worker_id)
