"""Worker-process heartbeats (in the database's clock) and what the API concludes from them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..storage.db import Database
from ..storage.models import ProcessRow

log = logging.getLogger(__name__)

JOB_ROLES = ("worker", "all")


async def beat(
    session: AsyncSession,
    *,
    process_id: str,
    role: str,
    hostname: str,
    pid: int,
    now: datetime,
    jobs: dict[str, Any],
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
                jobs=jobs,
            )
        )
    else:
        row.last_heartbeat = now
        row.jobs = jobs


async def forget(session: AsyncSession, process_id: str) -> None:
    await session.execute(delete(ProcessRow).where(ProcessRow.id == process_id))


async def worker_liveness(session: AsyncSession, *, now: datetime, alive_seconds: float) -> dict[str, Any]:
    rows = (
        await session.scalars(
            select(ProcessRow).where(ProcessRow.role.in_(JOB_ROLES)).order_by(ProcessRow.last_heartbeat.desc())
        )
    ).all()
    cutoff = now - timedelta(seconds=alive_seconds)
    alive = [row for row in rows if row.last_heartbeat >= cutoff]
    return {
        "alive": bool(alive),
        "replicas": len(alive),
        "last_heartbeat": rows[0].last_heartbeat.isoformat() if rows else None,
        "processes": [
            {
                "id": row.id,
                "role": row.role,
                "last_heartbeat": row.last_heartbeat.isoformat(),
                "jobs": row.jobs,
            }
            for row in alive
        ],
    }


async def api_replicas(session: AsyncSession, *, now: datetime, alive_seconds: float) -> list[dict[str, Any]]:
    cutoff = now - timedelta(seconds=alive_seconds)
    rows = (
        await session.scalars(
            select(ProcessRow)
            .where(ProcessRow.role == "api", ProcessRow.last_heartbeat >= cutoff)
            .order_by(ProcessRow.id)
        )
    ).all()
    return [
        {"id": row.id, "last_heartbeat": row.last_heartbeat.isoformat(), "started_at": row.started_at.isoformat()}
        for row in rows
    ]


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
                    jobs={},
                )
        except Exception as exc:
            log.warning("API heartbeat failed: %s", exc)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(every):
                await stop.wait()
