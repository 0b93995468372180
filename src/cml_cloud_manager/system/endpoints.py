"""`/api/system`: scheduled jobs (status, run now) and runtime settings."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from sqlalchemy import select

from ..apps.deps import DatabaseDep, SettingsDep
from ..auth.guard import needs
from ..auth.roles import Role
from ..errors import NotFound
from ..jobs import registry
from ..jobs.endpoints import queue
from ..jobs.scheduler import plan_for
from ..storage.models import JobRunRow
from . import service
from .schemas import SettingsUpdate, validate_changes

router = APIRouter(prefix="/api/system", tags=["system"], dependencies=needs(Role.VIEWER))


class JobNotFound(NotFound):
    code = "job_not_found"


def _run(row: JobRunRow | None) -> dict[str, Any] | None:
    if row is None:
        return None
    duration = (row.finished_at - row.started_at).total_seconds() if row.finished_at else None
    return {
        "id": row.id,
        "trigger": row.trigger,
        "scheduled_at": row.scheduled_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "outcome": row.outcome,
        "error": row.error,
        "duration_seconds": duration,
        "claimed_by": row.claimed_by,
        "summary": row.summary,
    }


@router.get("/jobs", summary="Scheduled jobs with their last run and next run")
async def list_jobs(db: DatabaseDep, settings: SettingsDep) -> list[dict[str, Any]]:
    async with db.session(write=False) as session:
        overrides = await service.get_all(session)
        now = await db.now(session)
        out = []
        for job in registry.jobs():
            plan = plan_for(job, settings, overrides)
            last = (
                await session.scalars(
                    select(JobRunRow).where(JobRunRow.job_name == job.name).order_by(JobRunRow.id.desc()).limit(1)
                )
            ).first()
            out.append(
                {
                    "name": job.name,
                    "description": job.description,
                    "enabled": plan.enabled,
                    "interval_seconds": plan.interval,
                    "timeout_seconds": plan.timeout,
                    "next_run": plan.next_tick(now) if plan.enabled else None,
                    "last_run": _run(last),
                }
            )
        return out


def _job_names() -> set[str]:
    return {job.name for job in registry.jobs()}


@router.get("/jobs/{name}/runs", summary="A job's recent runs, newest first")
async def job_runs(
    name: str, db: DatabaseDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[dict[str, Any] | None]:
    if name not in _job_names():
        raise JobNotFound(f"No job named '{name}' (jobs: {', '.join(sorted(_job_names()))})")
    async with db.session(write=False) as session:
        rows = await session.scalars(
            select(JobRunRow).where(JobRunRow.job_name == name).order_by(JobRunRow.id.desc()).limit(limit)
        )
        return [_run(row) for row in rows]


@router.post(
    "/jobs/{name}/run", summary="Run a job now (queued for a worker)", status_code=202, dependencies=needs(Role.ADMIN)
)
async def run_job(name: str, db: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    if name not in _job_names():
        raise JobNotFound(f"No job named '{name}' (jobs: {', '.join(sorted(_job_names()))})")
    async with db.session() as session:
        return await queue(db, settings, "system.run-job", {"job": name}, session=session)


@router.get("/config", summary="Settings the UI needs to explain what it shows (no secrets)")
async def public_config(settings: SettingsDep) -> dict[str, Any]:
    return {
        "idle_timeout_minutes": settings.idle_timeout_minutes,
        "idle_snooze_minutes": settings.idle_snooze_minutes,
        "aws_regions": settings.aws_regions,
        "cml_instance_type": settings.cml_instance_type,
        "auth_mode": settings.auth_mode,
    }


@router.get("/settings", summary="Runtime overrides of settings")
async def get_settings(db: DatabaseDep) -> dict[str, Any]:
    async with db.session(write=False) as session:
        return await service.get_all(session)


@router.put("/settings", summary="Set or remove runtime overrides", dependencies=needs(Role.ADMIN))
async def put_settings(body: SettingsUpdate, db: DatabaseDep) -> dict[str, Any]:
    changes = validate_changes(body.values)
    async with db.session() as session:
        return await service.update(session, changes, actor="api")
