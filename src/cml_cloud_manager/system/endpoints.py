"""`/api/system`: scheduled jobs (status, run now) and runtime settings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select

from ..auth.guard import needs
from ..auth.json_body import JsonBodyRoute
from ..auth.roles import Role
from ..errors import NotFound
from ..jobs.context import Job
from ..jobs.queue import ACCEPTED, queue
from ..jobs.scheduler import JobsDep, plan_for
from ..storage.models import JobRunRow
from ..storage.retry import retry_on_contention
from ..web.deps import DatabaseDep, SettingsDep
from ..web.paging import Limit, Offset, Page, page_of, rows_page
from . import service
from .schemas import PublicConfig, RunJob, RuntimeSettings, SettingsUpdate, validate_changes

router = APIRouter(prefix="/api/system", tags=["system"], dependencies=needs(Role.VIEWER), route_class=JsonBodyRoute)


class JobNotFound(NotFound):
    code = "job_not_found"


class JobRunOut(BaseModel):
    id: int
    trigger: str
    scheduled_at: datetime
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    error: str
    duration_seconds: float | None
    claimed_by: str
    summary: dict[str, Any] | None


class JobOut(BaseModel):
    name: str
    description: str
    enabled: bool
    interval_seconds: float
    timeout_seconds: float
    next_run: datetime | None
    last_run: JobRunOut | None


def _run(row: JobRunRow) -> JobRunOut:
    duration = (row.finished_at - row.started_at).total_seconds() if row.finished_at else None
    return JobRunOut(
        id=row.id,
        trigger=row.trigger,
        scheduled_at=row.scheduled_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        outcome=row.outcome,
        error=row.error,
        duration_seconds=duration,
        claimed_by=row.claimed_by,
        summary=row.summary,
    )


@router.get("/jobs", summary="Scheduled jobs with their last run and next run")
async def list_jobs(
    db: DatabaseDep, settings: SettingsDep, jobs: JobsDep, limit: Limit = 100, offset: Offset = 0
) -> Page[JobOut]:
    async with db.session(write=False) as session:
        overrides = await service.get_all(session)
        now = await db.now(session)
        out = []
        for job in jobs:
            plan = plan_for(job, settings, overrides)
            last = (
                await session.scalars(
                    select(JobRunRow).where(JobRunRow.job_name == job.name).order_by(JobRunRow.id.desc()).limit(1)
                )
            ).first()
            out.append(
                JobOut(
                    name=job.name,
                    description=job.description,
                    enabled=plan.enabled,
                    interval_seconds=plan.interval,
                    timeout_seconds=plan.timeout,
                    next_run=plan.next_tick(now) if plan.enabled else None,
                    last_run=_run(last) if last is not None else None,
                )
            )
        return page_of(out, limit=limit, offset=offset)


def _check_job(name: str, jobs: list[Job]) -> None:
    names = sorted(job.name for job in jobs)
    if name not in names:
        raise JobNotFound(f"No job named '{name}' (jobs: {', '.join(names)})")


@router.get("/jobs/{name}/runs", summary="A job's recent runs, newest first")
async def job_runs(
    name: str, db: DatabaseDep, jobs: JobsDep, limit: Limit = 100, offset: Offset = 0
) -> Page[JobRunOut]:
    _check_job(name, jobs)
    query = select(JobRunRow).where(JobRunRow.job_name == name).order_by(JobRunRow.id.desc())
    async with db.session(write=False) as session:
        rows, total = await rows_page(session, query, limit=limit, offset=offset)
    return Page[JobRunOut](items=[_run(row) for row in rows], total=total, limit=limit, offset=offset)


@router.post(
    "/jobs/{name}/run",
    summary="Run a job now (queued for a worker)",
    status_code=202,
    responses=ACCEPTED,
    dependencies=needs(Role.ADMIN),
)
@retry_on_contention
async def run_job(name: str, db: DatabaseDep, settings: SettingsDep, jobs: JobsDep) -> JSONResponse:
    _check_job(name, jobs)
    async with db.session() as session:
        return await queue(db, settings, RunJob(job=name), session=session)


@router.get("/config", summary="Settings the UI needs to explain what it shows (no secrets)")
async def public_config(settings: SettingsDep) -> PublicConfig:
    return PublicConfig(
        idle_timeout_minutes=settings.idle_timeout_minutes,
        idle_snooze_minutes=settings.idle_snooze_minutes,
        aws_regions=settings.aws_regions,
        cml_instance_type=settings.cml_instance_type,
        auth_mode=settings.auth_mode,
    )


# (response_model_exclude_unset: only the keys overridden are sent; the others are absent, not null.)
@router.get(
    "/settings",
    summary="Runtime overrides of settings",
    response_model=RuntimeSettings,
    response_model_exclude_unset=True,
)
async def get_settings(db: DatabaseDep) -> BaseModel:
    async with db.session(write=False) as session:
        return RuntimeSettings.model_validate(await service.get_all(session))


@router.put(
    "/settings",
    summary="Set or remove runtime overrides",
    dependencies=needs(Role.ADMIN),
    response_model=RuntimeSettings,
    response_model_exclude_unset=True,
)
@retry_on_contention
async def put_settings(body: SettingsUpdate, db: DatabaseDep) -> BaseModel:
    changes = validate_changes(body.values)
    async with db.session() as session:
        return RuntimeSettings.model_validate(await service.update(session, changes, actor="api"))
