"""Housekeeping: keep the outbox, run history and metric history bounded."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select

from ..jobs.context import Context
from ..storage.models import (
    CommandRow,
    EventRow,
    JobRunRow,
    LoginStateRow,
    MetricSampleRow,
    ProcessRow,
    SessionRow,
)
from .schemas import Pruned


async def housekeeping(ctx: Context) -> Pruned:
    history = timedelta(days=ctx.settings.history_days)
    async with ctx.db.session() as session:
        now = await ctx.db.now(session)
        newest = (await session.execute(select(func.max(EventRow.seq)))).scalar() or 0
        # The newest event always stays, so a reconnecting client can tell "pruned" from "never existed".
        events = await session.execute(
            delete(EventRow).where(
                EventRow.time < now - timedelta(seconds=ctx.settings.events_retention_seconds),
                EventRow.seq < newest,
            )
        )
        runs = await session.execute(
            delete(JobRunRow).where(JobRunRow.finished_at.is_not(None), JobRunRow.finished_at < now - history)
        )
        commands = await session.execute(
            delete(CommandRow).where(CommandRow.finished_at.is_not(None), CommandRow.finished_at < now - history)
        )
        samples = await session.execute(delete(MetricSampleRow).where(MetricSampleRow.ts < now - history))
        processes = await session.execute(delete(ProcessRow).where(ProcessRow.last_heartbeat < now - history))
        sessions = await session.execute(delete(SessionRow).where(SessionRow.expires_at <= now))
        await session.execute(delete(LoginStateRow).where(LoginStateRow.created_at < now - timedelta(hours=1)))
    return Pruned(
        events_pruned=events.rowcount,  # type: ignore[attr-defined]
        job_runs_pruned=runs.rowcount,  # type: ignore[attr-defined]
        commands_pruned=commands.rowcount,  # type: ignore[attr-defined]
        metric_samples_pruned=samples.rowcount,  # type: ignore[attr-defined]
        processes_pruned=processes.rowcount,  # type: ignore[attr-defined]
        sessions_pruned=sessions.rowcount,  # type: ignore[attr-defined]
    )
