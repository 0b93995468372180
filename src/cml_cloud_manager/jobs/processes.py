"""Process heartbeats (in the database's clock) and what they say: is a worker alive to run a queued command,
which API replicas are up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..config import ProcessRole
from ..storage.db import Database
from ..storage.models import ProcessRow

log = logging.getLogger(__name__)

JOB_ROLES = ("worker", "all")


class Work(BaseModel):
    """What a worker process was running at its last heartbeat."""

    running: list[str] = Field(default_factory=list, description="Jobs")
    commands: int = Field(0, description="Commands")


class WorkerPresence(BaseModel):
    alive: bool = Field(description="A worker process sent a heartbeat within WORKER_ALIVE_SECONDS")
    replicas: int = Field(description="Worker processes alive")
    last_heartbeat: datetime | None = Field(description="The latest heartbeat of any worker process")


class WorkerProcess(BaseModel):
    id: str
    role: ProcessRole
    last_heartbeat: datetime
    jobs: Work


class WorkerLiveness(WorkerPresence):
    processes: list[WorkerProcess] = Field(description="The live ones, latest heartbeat first")


class ApiReplica(BaseModel):
    id: str
    last_heartbeat: datetime
    started_at: datetime


class Fleet(BaseModel):
    worker: WorkerLiveness
    api_replicas: list[ApiReplica]


async def beat(
    session: AsyncSession,
    *,
    process_id: str,
    role: str,
    hostname: str,
    pid: int,
    now: datetime,
    jobs: Work,
) -> None:
    row = await session.get(ProcessRow, process_id)
    if row is None:
        session.add(
            ProcessRow(
                id=process_id,
                role=role,
                hostname=hostname,
                pid=pid,
                started_at=now,
                last_heartbeat=now,
                jobs=jobs.model_dump(),
            )
        )
    else:
        row.last_heartbeat = now
        row.jobs = jobs.model_dump()


async def forget(session: AsyncSession, process_id: str) -> None:
    await session.execute(delete(ProcessRow).where(ProcessRow.id == process_id))


async def worker_liveness(session: AsyncSession, *, now: datetime, alive_seconds: float) -> WorkerLiveness:
    rows = (
        await session.scalars(
            select(ProcessRow).where(ProcessRow.role.in_(JOB_ROLES)).order_by(ProcessRow.last_heartbeat.desc())
        )
    ).all()
    cutoff = now - timedelta(seconds=alive_seconds)
    alive = [row for row in rows if row.last_heartbeat >= cutoff]
    return WorkerLiveness(
        alive=bool(alive),
        replicas=len(alive),
        last_heartbeat=rows[0].last_heartbeat if rows else None,
        processes=[
            WorkerProcess(
                id=row.id, role=row.role, last_heartbeat=row.last_heartbeat, jobs=Work.model_validate(row.jobs)
            )
            for row in alive
        ],
    )


async def api_replicas(session: AsyncSession, *, now: datetime, alive_seconds: float) -> list[ApiReplica]:
    cutoff = now - timedelta(seconds=alive_seconds)
    rows = (
        await session.scalars(
            select(ProcessRow)
            .where(ProcessRow.role == "api", ProcessRow.last_heartbeat >= cutoff)
            .order_by(ProcessRow.id)
        )
    ).all()
    return [ApiReplica(id=row.id, last_heartbeat=row.last_heartbeat, started_at=row.started_at) for row in rows]


async def fleet_processes(db: Database, *, alive_seconds: float) -> Fleet:
    """The live worker processes and API replicas, in one read: what a health check learns from the database."""
    async with db.session(write=False) as session:
        now = await db.now(session)
        return Fleet(
            worker=await worker_liveness(session, now=now, alive_seconds=alive_seconds),
            api_replicas=await api_replicas(session, now=now, alive_seconds=alive_seconds),
        )


async def keep_beating(db: Database, stop: asyncio.Event, *, process_id: str, role: str, every: float) -> None:
    """The API's heartbeat, so the health page can list API replicas; failures only skip a beat. Ends when
    `stop` is set, never by cancellation: a task cancelled inside a SQLite transaction can leave the write
    lock held, and the shutdown's own write then waits for it."""
    while not stop.is_set():
        try:
            async with db.session() as session:
                await beat(
                    session,
                    process_id=process_id,
                    role=role,
                    hostname=socket.gethostname(),
                    pid=os.getpid(),
                    now=await db.now(session),
                    jobs=Work(),
                )
        except Exception as exc:
            log.warning("API heartbeat failed: %s", exc)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(every):
                await stop.wait()
