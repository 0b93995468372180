"""`/api/workers`: the fleet. The list, one worker and the totals answer from memory (`readmodel.py`), other
reads from the database; actions queue commands for the worker."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response

from ..auth.guard import needs, require
from ..auth.json_body import JsonBodyRoute
from ..auth.roles import Principal, Role
from ..config import Settings
from ..errors import BadRequest, Conflict
from ..events.cloudevents import CloudEvent
from ..jobs.queue import ACCEPTED, queue
from ..storage.retry import retry_on_contention
from ..web.deps import DatabaseDep, SettingsDep
from ..web.paging import MAX_LIMIT, Limit, Offset, Page
from . import exclusions, service
from .domain import WorkerStatus
from .readmodel import FleetDep
from .schemas import (
    CreateWorker,
    DeleteWorker,
    FleetSummary,
    IdleUpdate,
    ImportByAmi,
    ImportInstance,
    MetricSample,
    MonitoringUpdate,
    SetMonitoring,
    SetTags,
    StartWorker,
    StopWorker,
    TagsUpdate,
    WorkerCommand,
    WorkerCreate,
    WorkerImport,
    WorkerOut,
    WorkerPage,
    WorkerRemoved,
)

JSON = "application/json"
router = APIRouter(prefix="/api/workers", tags=["workers"], dependencies=needs(Role.VIEWER), route_class=JsonBodyRoute)


def _region(settings: Settings, region: str | None) -> str:
    if region is None:
        return settings.aws_regions[0]
    if region not in settings.aws_regions:
        raise BadRequest(f"Region '{region}' is not managed here (AWS_REGIONS: {', '.join(settings.aws_regions)})")
    return region


# Reads from memory send the JSON they keep: `response_model` documents it, and FastAPI would validate it again.
@router.get("", summary="List workers", response_model=WorkerPage)
async def list_workers(
    fleet: FleetDep,
    region: str | None = None,
    status: WorkerStatus | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Response:
    return Response(fleet.page(region=region, status=status, limit=limit, offset=offset), media_type=JSON)


@router.get("/summary", summary="Fleet totals: counts by status, average CPU, estimated hourly cost")
async def fleet_summary(fleet: FleetDep) -> FleetSummary:
    return fleet.summary()


@router.post(
    "",
    summary="Create a worker (provision an instance)",
    status_code=202,
    responses=ACCEPTED,
    dependencies=needs(Role.ADMIN),
)
@retry_on_contention
async def create_worker(body: WorkerCreate, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    ami_id = body.ami_id or settings.cml_ami_id
    if not ami_id:
        raise BadRequest("No AMI to launch from: pass ami_id or set CML_AMI_ID")
    async with db.session() as session:
        row = await service.add(
            session,
            service.create_row(
                name=body.name,
                aws_region=_region(settings, body.region),
                instance_type=body.instance_type or settings.cml_instance_type,
                ami_id=ami_id,
                status=WorkerStatus.PENDING,
            ),
            reason="created by an operator",
        )
        payload = CreateWorker(
            worker_id=row.id,
            subnet_id=body.subnet_id,
            security_group_ids=body.security_group_ids,
            key_name=body.key_name,
            tags=body.tags,
        )
        return await queue(db, settings, payload, session=session, worker_id=row.id)


@router.post(
    "/import",
    summary="Import one instance, or all from AMIs matching a name",
    status_code=202,
    responses=ACCEPTED,
    dependencies=needs(Role.ADMIN),
)
@retry_on_contention
async def import_workers(body: WorkerImport, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    if (body.instance_id is None) == (body.ami_name_pattern is None):
        raise BadRequest("Pass exactly one of instance_id or ami_name_pattern")
    async with db.session() as session:
        if body.instance_id is not None:
            if await service.by_instance(session, body.instance_id) is not None:
                raise Conflict(f"Instance {body.instance_id} is already managed")
            if await exclusions.excluded(session, [body.instance_id]):
                raise Conflict(exclusions.refusal(body.instance_id))
            one = ImportInstance(region=_region(settings, body.region), instance_id=body.instance_id)
            return await queue(db, settings, one, session=session)
        assert body.ami_name_pattern is not None
        matching = ImportByAmi(
            region=_region(settings, body.region) if body.region else None, ami_name_pattern=body.ami_name_pattern
        )
        return await queue(db, settings, matching, session=session)


@router.get("/{worker_id}", summary="One worker", response_model=WorkerOut)
async def get_worker(worker_id: str, fleet: FleetDep) -> Response:
    return Response(fleet.get(worker_id), media_type=JSON)


async def _action(
    db: DatabaseDep, settings: SettingsDep, worker_id: str, action: str, payload: WorkerCommand
) -> JSONResponse:
    return await service.queue_action(db, settings, worker_id, action, payload, needs_instance=True)


@router.post(
    "/{worker_id}/start",
    summary="Start the EC2 instance",
    status_code=202,
    responses=ACCEPTED,
    dependencies=needs(Role.OPERATOR),
)
async def start_worker(worker_id: str, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    return await _action(db, settings, worker_id, "start", StartWorker(worker_id=worker_id))


@router.post(
    "/{worker_id}/stop",
    summary="Stop the EC2 instance",
    status_code=202,
    responses=ACCEPTED,
    dependencies=needs(Role.OPERATOR),
)
async def stop_worker(worker_id: str, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    return await _action(db, settings, worker_id, "stop", StopWorker(worker_id=worker_id))


@router.delete(
    "/{worker_id}",
    summary="Stop managing a worker (its instance is excluded from imports); `terminate=true` terminates it instead",
    dependencies=needs(Role.ADMIN),
    response_model=WorkerRemoved,
    responses=ACCEPTED,
)
@retry_on_contention
async def delete_worker(
    worker_id: str,
    db: DatabaseDep,
    settings: SettingsDep,
    caller: Annotated[Principal, Depends(require(Role.ADMIN))],
    terminate: bool = False,
) -> JSONResponse:
    if terminate:
        terminating = DeleteWorker(worker_id=worker_id, terminate=True)
        return await service.queue_action(db, settings, worker_id, "terminate", terminating)
    async with db.session() as session:
        # Locked: a concurrent removal is waited for, and then this one finds nothing (404), not a vanished row.
        row = await service.get(session, worker_id, for_update=True)
        # Else the next auto-import finds the instance and brings it back under a new id.
        await exclusions.exclude(session, row, by=caller.name)
        await service.remove(session, row, terminated=False)
    return JSONResponse(WorkerRemoved(deleted=worker_id, terminated=False, excluded=row.aws_instance_id).model_dump())


@router.put(
    "/{worker_id}/tags",
    summary="Set or remove instance tags",
    status_code=202,
    responses=ACCEPTED,
    dependencies=needs(Role.ADMIN),
)
async def update_tags(worker_id: str, body: TagsUpdate, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    if not body.set and not body.remove:
        raise BadRequest("Nothing to change: pass tags in 'set' and/or keys in 'remove'")
    payload = SetTags(worker_id=worker_id, set=body.set, remove=body.remove)
    return await _action(db, settings, worker_id, "tags", payload)


@router.post(
    "/{worker_id}/monitoring",
    summary="Turn detailed (1-minute) CloudWatch monitoring on or off",
    status_code=202,
    responses=ACCEPTED,
    dependencies=needs(Role.ADMIN),
)
async def set_monitoring(
    worker_id: str, body: MonitoringUpdate, db: DatabaseDep, settings: SettingsDep
) -> JSONResponse:
    payload = SetMonitoring(worker_id=worker_id, enabled=body.enabled)
    return await _action(db, settings, worker_id, "monitoring", payload)


@router.post(
    "/{worker_id}/refresh",
    summary="Refresh state and metrics now (throttled, de-duplicated)",
    dependencies=needs(Role.OPERATOR),
    status_code=202,
    responses=ACCEPTED,
)
async def refresh_worker(
    worker_id: str,
    db: DatabaseDep,
    settings: SettingsDep,
    caller: Annotated[Principal, Depends(require(Role.OPERATOR))],
) -> JSONResponse:
    return await service.request_refresh(db, settings, worker_id, requested_by=caller.name)


@router.get("/{worker_id}/metrics", summary="Stored metric samples, oldest first")
async def metrics_history(
    worker_id: str,
    db: DatabaseDep,
    hours: Annotated[float, Query(gt=0, le=24 * 31)] = 24,
    limit: Limit = MAX_LIMIT,
    offset: Offset = 0,
) -> Page[MetricSample]:
    return await service.metrics_page(db, worker_id, hours=hours, limit=limit, offset=offset)


@router.get("/{worker_id}/events", summary="The worker's recent events (CloudEvents envelopes), newest first")
async def worker_events(
    worker_id: str, db: DatabaseDep, settings: SettingsDep, limit: Limit = 100, offset: Offset = 0
) -> Page[CloudEvent]:
    return await service.events_page(db, settings, worker_id, limit=limit, offset=offset)


@router.put(
    "/{worker_id}/idle",
    summary="Idle detection for this worker: opt out/in, snooze",
    response_model=WorkerOut,
    dependencies=needs(Role.OPERATOR),
)
async def update_idle(worker_id: str, body: IdleUpdate, db: DatabaseDep) -> WorkerOut:
    return await service.update_idle(db, worker_id, enabled=body.enabled, snooze_minutes=body.snooze_minutes)
