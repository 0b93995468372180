"""Worker-process heartbeats (in the database's clock) and what the API concludes from them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..storage.models import ProcessRow

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
