"""Worker aggregate operations. Module-level functions, session first, callers owning the transaction; below
them, the units of work a request asks for (each its own transaction, run again whole on contention)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..config import Settings
from ..errors import BadRequest, Conflict, NotFound, TooManyRequests
from ..events import outbox
from ..events.cloudevents import CloudEvent, envelope, schemas_url
from ..jobs.context import CommandPayload
from ..jobs.processes import worker_liveness
from ..jobs.queue import CommandAccepted, accepted, queue
from ..storage.db import Database
from ..storage.models import CommandRow, EventRow, MetricSampleRow, WorkerRow
from ..storage.retry import retry_on_contention
from ..web.paging import Page, rows_page
from .domain import check_action, check_transition
from .events import (
    InstanceChanges,
    WorkerChanged,
    WorkerCreated,
    WorkerDeleted,
    WorkersObserved,
    WorkerStatusUpdated,
    WorkerUpdated,
)
from .schemas import FleetSnapshot, MetricSample, RefreshWorkers, WorkerOut


class WorkerNotFound(NotFound):
    code = "worker_not_found"


async def get(session: AsyncSession, worker_id: str, *, for_update: bool = False) -> WorkerRow:
    row = await session.get(WorkerRow, worker_id, with_for_update=for_update)
    if row is None:
        raise WorkerNotFound(f"No worker with id '{worker_id}'")
    return row


async def by_instance(session: AsyncSession, instance_id: str) -> WorkerRow | None:
    return (await session.scalars(select(WorkerRow).where(WorkerRow.aws_instance_id == instance_id))).first()


async def snapshot(session: AsyncSession, worker_ids: frozenset[str] | None) -> FleetSnapshot:
    query = select(WorkerRow).order_by(WorkerRow.name)
    if worker_ids is not None:
        query = query.where(WorkerRow.id.in_(worker_ids))
    rows = (await session.scalars(query)).all()
    return FleetSnapshot(workers=[WorkerOut.model_validate(row) for row in rows])


def create_row(**fields: Any) -> WorkerRow:
    now = datetime.now(UTC)
    fields.setdefault("tags", {})
    fields.setdefault("details", {})
    return WorkerRow(created_at=now, updated_at=now, **fields)


async def add(session: AsyncSession, row: WorkerRow, *, reason: str) -> WorkerRow:
    session.add(row)
    await session.flush()
    await outbox.append(session, WorkerCreated(reason=reason, worker=WorkerOut.model_validate(row)), worker_id=row.id)
    return row


async def set_status(session: AsyncSession, row: WorkerRow, status: str, *, reason: str = "") -> bool:
    """Move to `status` if legal (IllegalTransition otherwise, before anything is changed); True if changed."""
    target = check_transition(row.status, status)
    if target == row.status:
        return False
    previous = row.status
    row.status = target
    row.updated_at = datetime.now(UTC)
    await outbox.append(
        session,
        WorkerStatusUpdated(name=row.name, previous=previous, status=target, reason=reason),
        worker_id=row.id,
    )
    return True


async def touch(session: AsyncSession, row: WorkerRow, changed: WorkerChanged) -> None:
    """Record that fields changed and tell the browsers which ones (`WorkerUpdated.of(row, tags=...)`)."""
    row.updated_at = datetime.now(UTC)
    await outbox.append(session, changed, worker_id=row.id)


async def observed(session: AsyncSession, worker_ids: list[str]) -> None:
    """Rows written without an event of their own: the API replicas must read them again (`readmodel.py`)."""
    await outbox.append(session, WorkersObserved(worker_ids=worker_ids))


async def remove(session: AsyncSession, row: WorkerRow, *, terminated: bool) -> None:
    await outbox.append(session, WorkerDeleted(name=row.name, instance_terminated=terminated), worker_id=row.id)
    await session.delete(row)


@retry_on_contention
async def queue_action(
    db: Database,
    settings: Settings,
    worker_id: str,
    action: str,
    command: CommandPayload | Callable[[AsyncSession, WorkerRow], Awaitable[CommandPayload]],
    *,
    needs_instance: bool = False,
    requested_by: str = "",
    secret: str | None = None,
) -> JSONResponse:
    """Get the worker, check that its state allows `action`, and queue `command` for it, answering 202.

    `command` is the payload, or what builds it after its own checks (a lab's, say) in the same transaction."""
    async with db.session() as session:
        worker = await get(session, worker_id)
        check_action(action, worker.status, name=worker.name)
        if needs_instance and worker.aws_instance_id is None:
            raise Conflict(f"Worker '{worker.name}' has no EC2 instance yet")
        payload = command if isinstance(command, CommandPayload) else await command(session, worker)
        return await queue(
            db,
            settings,
            payload,
            session=session,
            worker_id=worker_id,
            requested_by=requested_by,
            secret=secret,
        )


REFRESH_MIN_SECONDS = 10


@retry_on_contention
async def request_refresh(db: Database, settings: Settings, worker_id: str, *, requested_by: str) -> JSONResponse:
    """Queue a refresh of the worker's state and metrics, unless one is on its way (answered with that one) or
    a person's refresh finished less than `REFRESH_MIN_SECONDS` ago (TooManyRequests)."""
    async with db.session() as session:
        worker = await get(session, worker_id)
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
            return accepted(
                CommandAccepted(
                    command_id=pending.id,
                    status=pending.status,
                    worker_alive=alive.alive,
                    message="A refresh is already on its way.",
                )
            )
        # Only refreshes a person asked for count: scheduled worker-metrics runs and the refreshes imports queue
        # (no `requested_by`) must not grey out the button.
        last = (
            await session.scalars(
                select(CommandRow.finished_at)
                .where(
                    CommandRow.type == "worker.refresh",
                    CommandRow.worker_id == worker_id,
                    CommandRow.requested_by != "",
                    CommandRow.finished_at.is_not(None),
                )
                .order_by(CommandRow.finished_at.desc())
                .limit(1)
            )
        ).first()
        wait = REFRESH_MIN_SECONDS - ((await db.now(session)) - last).total_seconds() if last else 0
        if wait > 0:
            seconds = math.ceil(wait)
            raise TooManyRequests(
                f"Worker '{worker.name}' was refreshed moments ago; try again in {seconds}s", retry_after=seconds
            )
        return await queue(
            db,
            settings,
            RefreshWorkers(worker_ids=[worker_id]),
            session=session,
            worker_id=worker_id,
            requested_by=requested_by,
        )


async def metrics_page(db: Database, worker_id: str, *, hours: float, limit: int, offset: int) -> Page[MetricSample]:
    """The worker's metric samples of the last `hours`, oldest first."""
    since = datetime.now(UTC) - timedelta(hours=hours)
    query = (
        select(MetricSampleRow)
        .where(MetricSampleRow.worker_id == worker_id, MetricSampleRow.ts >= since)
        .order_by(MetricSampleRow.ts, MetricSampleRow.id)
    )
    async with db.session(write=False) as session:
        await get(session, worker_id)
        rows, total = await rows_page(session, query, limit=limit, offset=offset)
    items = [MetricSample.model_validate(row) for row in rows]
    return Page[MetricSample](items=items, total=total, limit=limit, offset=offset)


async def events_page(db: Database, settings: Settings, worker_id: str, *, limit: int, offset: int) -> Page[CloudEvent]:
    """The worker's events as CloudEvents envelopes, newest first."""
    query = select(EventRow).where(EventRow.worker_id == worker_id).order_by(EventRow.seq.desc())
    async with db.session(write=False) as session:
        await get(session, worker_id)
        rows, total = await rows_page(session, query, limit=limit, offset=offset)
    schemas = schemas_url(settings)
    items = [envelope(row, schemas) for row in rows]
    return Page[CloudEvent](items=items, total=total, limit=limit, offset=offset)


@retry_on_contention
async def update_idle(db: Database, worker_id: str, *, enabled: bool | None, snooze_minutes: float | None) -> WorkerOut:
    """Opt the worker out of idle detection (or back in), or snooze it for `snooze_minutes` from now."""
    async with db.session() as session:
        # Locked: a removal at the same moment is waited for, then this finds nothing (404) instead of failing
        # to update a row that is gone.
        row = await get(session, worker_id, for_update=True)
        changes = InstanceChanges()
        if enabled is not None:
            row.idle_detection_enabled = changes.idle_detection_enabled = enabled
        if snooze_minutes is not None:
            row.snoozed_until = changes.snoozed_until = datetime.now(UTC) + timedelta(minutes=snooze_minutes)
        if not changes.model_fields_set:
            raise BadRequest("Nothing to change: pass 'enabled' and/or 'snooze_minutes'")
        await touch(session, row, WorkerUpdated(name=row.name, changes=changes))
        return WorkerOut.model_validate(row)
