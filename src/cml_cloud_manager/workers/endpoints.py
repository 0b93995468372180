"""`/api/workers`: the fleet. Reads answer from the database; actions queue commands for the worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response
from pydantic_core import to_json
from sqlalchemy import select

from ..apps.deps import DatabaseDep, SettingsDep
from ..auth.guard import needs
from ..auth.roles import Role
from ..config import Settings
from ..errors import BadRequest, Conflict
from ..events.cloudevents import envelope
from ..health.service import worker_liveness
from ..jobs.endpoints import queue
from ..storage.models import CommandRow, EventRow, MetricSampleRow
from . import service
from .domain import WorkerStatus, check_action
from .schemas import (
    CommandAccepted,
    IdleUpdate,
    MetricSample,
    TagsUpdate,
    WorkerCreate,
    WorkerImport,
    WorkerOut,
    WorkerPage,
)

router = APIRouter(prefix="/api/workers", tags=["workers"], dependencies=needs(Role.VIEWER))
ACCEPTED: dict[int | str, dict[str, Any]] = {202: {"model": CommandAccepted, "description": "Queued as a command"}}
REFRESH_MIN_SECONDS = 10


class TooSoon(Conflict):
    status_code = 429
    code = "too_many_requests"


def _region(settings: Settings, region: str | None) -> str:
    if region is None:
        return settings.aws_regions[0]
    if region not in settings.aws_regions:
        raise BadRequest(f"Region '{region}' is not managed here (AWS_REGIONS: {', '.join(settings.aws_regions)})")
    return region


@router.get("", summary="List workers", response_model=WorkerPage)
async def list_workers(
    db: DatabaseDep,
    region: str | None = None,
    status: WorkerStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> Response:
    page = await service.list_page(db, region=region, status=status, limit=limit, offset=offset)
    # `response_model` documents the page; FastAPI would also validate it, row by row.
    return Response(to_json(page), media_type="application/json")


@router.get("/summary", summary="Fleet totals: counts by status, average CPU, estimated hourly cost")
async def fleet_summary(db: DatabaseDep) -> dict[str, Any]:
    async with db.session(write=False) as session:
        return await service.summary(session)


@router.post(
    "",
    summary="Create a worker (provision an instance)",
    status_code=202,
    responses=ACCEPTED,
    dependencies=needs(Role.ADMIN),
)
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
        payload = {"worker_id": row.id, **body.model_dump(exclude={"name", "region", "ami_id", "instance_type"})}
        return await queue(db, settings, "worker.create", payload, session=session, worker_id=row.id)


@router.post(
    "/import",
    summary="Import one instance, or all from AMIs matching a name",
    status_code=202,
    dependencies=needs(Role.ADMIN),
)
async def import_workers(body: WorkerImport, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    if (body.instance_id is None) == (body.ami_name_pattern is None):
        raise BadRequest("Pass exactly one of instance_id or ami_name_pattern")
    async with db.session() as session:
        if body.instance_id is not None:
            if await service.by_instance(session, body.instance_id) is not None:
                raise Conflict(f"Instance {body.instance_id} is already managed")
            one = {"region": _region(settings, body.region), "instance_id": body.instance_id}
            return await queue(db, settings, "worker.import", one, session=session)
        payload: dict[str, Any] = {
            "region": _region(settings, body.region) if body.region else None,
            "ami_name_pattern": body.ami_name_pattern,
        }
        return await queue(db, settings, "worker.import-by-ami", payload, session=session)


@router.get("/{worker_id}", summary="One worker", response_model=WorkerOut)
async def get_worker(worker_id: str, db: DatabaseDep) -> Response:
    worker = await service.read(db, worker_id)
    return Response(worker.model_dump_json(), media_type="application/json")  # validated once, in `read`


async def _action(db: DatabaseDep, settings: SettingsDep, worker_id: str, action: str, **payload: Any) -> JSONResponse:
    async with db.session() as session:
        worker = await service.get(session, worker_id)
        check_action(action, worker.status, name=worker.name)
        if worker.aws_instance_id is None:
            raise Conflict(f"Worker '{worker.name}' has no EC2 instance yet")
        return await queue(
            db, settings, f"worker.{action}", {"worker_id": worker_id, **payload}, session=session, worker_id=worker_id
        )


@router.post(
    "/{worker_id}/start",
    summary="Start the EC2 instance",
    status_code=202,
    responses=ACCEPTED,
    dependencies=needs(Role.OPERATOR),
)
async def start_worker(worker_id: str, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    return await _action(db, settings, worker_id, "start")


@router.post(
    "/{worker_id}/stop",
    summary="Stop the EC2 instance",
    status_code=202,
    responses=ACCEPTED,
    dependencies=needs(Role.OPERATOR),
)
async def stop_worker(worker_id: str, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    return await _action(db, settings, worker_id, "stop")


@router.delete(
    "/{worker_id}",
    summary="Stop managing a worker; `terminate=true` also terminates its instance",
    dependencies=needs(Role.ADMIN),
    responses=ACCEPTED,
)
async def delete_worker(
    worker_id: str, db: DatabaseDep, settings: SettingsDep, terminate: bool = False
) -> JSONResponse:
    if terminate:
        async with db.session() as session:
            worker = await service.get(session, worker_id)
            check_action("terminate", worker.status, name=worker.name)
            payload = {"worker_id": worker_id, "terminate": True}
            return await queue(db, settings, "worker.delete", payload, session=session, worker_id=worker_id)
    async with db.session() as session:
        await service.remove(session, await service.get(session, worker_id), terminated=False)
    return JSONResponse({"deleted": worker_id, "terminated": False})


@router.put(
    "/{worker_id}/tags",
    summary="Set or remove instance tags",
    status_code=202,
    responses=ACCEPTED,
    dependencies=needs(Role.ADMIN),
)
async def update_tags(worker_id: str, body: TagsUpdate, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    for key in [*body.set, *body.remove]:
        if not key or len(key) > 128 or key.lower().startswith("aws:"):
            raise BadRequest(f"Tag key {key!r} is not allowed (1-128 characters, not starting with 'aws:')")
    if not body.set and not body.remove:
        raise BadRequest("Nothing to change: pass tags in 'set' and/or keys in 'remove'")
    return await _action(db, settings, worker_id, "tags", set=body.set, remove=body.remove)


@router.post(
    "/{worker_id}/monitoring",
    summary="Enable detailed CloudWatch monitoring",
    status_code=202,
    dependencies=needs(Role.ADMIN),
)
async def enable_monitoring(worker_id: str, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    return await _action(db, settings, worker_id, "monitoring")


@router.post(
    "/{worker_id}/refresh",
    summary="Refresh state and metrics now (throttled, de-duplicated)",
    dependencies=needs(Role.OPERATOR),
    status_code=202,
    responses=ACCEPTED,
)
async def refresh_worker(worker_id: str, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    async with db.session() as session:
        worker = await service.get(session, worker_id)
        check_action("refresh", worker.status, name=worker.name)
        pending = (
            await session.scalars(
                select(CommandRow).where(
                    CommandRow.type == "worker.refresh",
                    CommandRow.worker_id == worker_id,
                    CommandRow.status.in_(("queued", "running")),
                )
            )
        ).first()
        if pending is not None:
            alive = await worker_liveness(
                session, now=await db.now(session), alive_seconds=settings.worker_alive_seconds
            )
            body = {
                "command_id": pending.id,
                "status": pending.status,
                "worker_alive": alive["alive"],
                "message": "A refresh is already on its way.",
            }
            return JSONResponse(body, status_code=202, headers={"Location": f"/api/commands/{pending.id}"})
        now = datetime.now(UTC)
        if worker.metrics_at and now - worker.metrics_at < timedelta(seconds=REFRESH_MIN_SECONDS):
            wait = REFRESH_MIN_SECONDS - (now - worker.metrics_at).total_seconds()
            raise TooSoon(f"Worker '{worker.name}' was refreshed moments ago; try again in {wait:.0f}s")
        return await queue(
            db, settings, "worker.refresh", {"worker_id": worker_id}, session=session, worker_id=worker_id
        )


@router.get("/{worker_id}/metrics", summary="Stored metric samples, oldest first", response_model=list[MetricSample])
async def metrics_history(
    worker_id: str, db: DatabaseDep, hours: Annotated[float, Query(gt=0, le=24 * 31)] = 24
) -> list[MetricSample]:
    async with db.session(write=False) as session:
        await service.get(session, worker_id)
        since = datetime.now(UTC) - timedelta(hours=hours)
        rows = await session.scalars(
            select(MetricSampleRow)
            .where(MetricSampleRow.worker_id == worker_id, MetricSampleRow.ts >= since)
            .order_by(MetricSampleRow.ts)
        )
        return [MetricSample.model_validate(row) for row in rows]


@router.get("/{worker_id}/events", summary="The worker's recent events, newest first")
async def worker_events(
    worker_id: str, db: DatabaseDep, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[dict[str, Any]]:
    async with db.session(write=False) as session:
        await service.get(session, worker_id)
        rows = await session.scalars(
            select(EventRow).where(EventRow.worker_id == worker_id).order_by(EventRow.seq.desc()).limit(limit)
        )
        return [envelope(row) for row in rows]


@router.put(
    "/{worker_id}/idle",
    summary="Idle detection for this worker: opt out/in, snooze",
    response_model=WorkerOut,
    dependencies=needs(Role.OPERATOR),
)
async def update_idle(worker_id: str, body: IdleUpdate, db: DatabaseDep) -> WorkerOut:
    async with db.session() as session:
        row = await service.get(session, worker_id)
        changes: dict[str, Any] = {}
        if body.enabled is not None:
            row.idle_detection_enabled = changes["idle_detection_enabled"] = body.enabled
        if body.snooze_minutes is not None:
            row.snoozed_until = datetime.now(UTC) + timedelta(minutes=body.snooze_minutes)
            changes["snoozed_until"] = row.snoozed_until.isoformat()
        if not changes:
            raise BadRequest("Nothing to change: pass 'enabled' and/or 'snooze_minutes'")
        await service.touch(session, row, "worker.updated", changes)
        return WorkerOut.model_validate(row)
