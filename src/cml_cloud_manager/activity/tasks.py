"""The `idle-detection` job: read CML telemetry, track the last relevant activity, stop idle workers."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime, timedelta

from pydantic import Field
from sqlalchemy import select

from ..aws import ec2
from ..cml.errors import CMLError
from ..cml.types import TelemetryEvent
from ..config import Settings
from ..errors import AppError
from ..events import outbox
from ..jobs.commands import enqueue
from ..jobs.context import Context, Report
from ..storage.models import WorkerRow
from ..workers import service as workers
from ..workers.domain import ServiceStatus, WorkerStatus
from ..workers.events import WorkerActivityUpdated, WorkerIdlePaused
from ..workers.schemas import FollowState

log = logging.getLogger(__name__)

# Telemetry that means a person is using the host; system_stats and the like arrive on their own.
RELEVANT = frozenset(
    {
        "start_lab",
        "stop_lab",
        "queue_node",
        "stop_node",
        "start_node",
        "boot_node",
        "wipe_node",
        "import_lab",
        "export_lab",
        "user_activity",
    }
)


def relevant(events: list[TelemetryEvent], excluded_users: str) -> list[TelemetryEvent]:
    pattern = re.compile(excluded_users) if excluded_users else None

    def by_person(event: TelemetryEvent) -> bool:
        if pattern is None:
            return True
        users = [event.user_id, event.data.get("username"), event.data.get("user")]
        return not any(isinstance(u, str) and pattern.search(u) for u in users)

    return [e for e in events if e.category in RELEVANT and by_person(e)]


def idle_since(row: WorkerRow) -> datetime | None:
    """Activity, a resume or the launch, whichever is latest: the clock idleness is measured from."""
    return max((t for t in (row.last_activity_at, row.last_resumed_at, row.launched_at) if t is not None), default=None)


def should_stop(row: WorkerRow, settings: Settings, now: datetime) -> bool:
    if not row.idle_detection_enabled or row.status != WorkerStatus.RUNNING:
        return False
    if row.snoozed_until is not None and row.snoozed_until > now:
        return False
    if row.last_resumed_at and now - row.last_resumed_at < timedelta(minutes=settings.idle_snooze_minutes):
        return False
    since = idle_since(row)
    return since is not None and now - since >= timedelta(minutes=settings.idle_timeout_minutes)


async def check_worker(ctx: Context, worker: WorkerRow, now: datetime, deadline: float | None = None) -> str:
    # Only the read is bounded by the run's budget: a stop, once asked of EC2, is always recorded.
    async with asyncio.timeout_at(deadline):
        events = await ctx.integrations.cml.client(worker).telemetry_events(since=worker.last_activity_at)
    latest = max((e.timestamp for e in relevant(events, ctx.settings.idle_excluded_users)), default=None)
    async with ctx.db.fan_out_session() as session:
        row = await workers.get(session, worker.id)
        if latest is not None and (row.last_activity_at is None or latest > row.last_activity_at):
            row.last_activity_at = latest
            await workers.touch(session, row, WorkerActivityUpdated.of(row, last_activity_at=latest))
        if not should_stop(row, ctx.settings, now):
            return "active"
    assert worker.aws_instance_id
    changes = await ec2.stop_instances(ctx.integrations.aws, worker.aws_region, [worker.aws_instance_id])
    async with ctx.db.fan_out_session() as session:
        row = await workers.get(session, worker.id)
        change = changes.get(worker.aws_instance_id)
        await workers.set_status(
            session, row, change.current_state.value if change else WorkerStatus.STOPPING, reason="idle"
        )
        row.auto_pauses += 1
        paused = WorkerIdlePaused(name=row.name, idle_since=idle_since(row), auto_pauses=row.auto_pauses)
        await outbox.append(session, paused, worker_id=row.id)
        # Shown `stopped` when EC2 says so, not at the next worker-metrics run; the job itself does not wait.
        await enqueue(session, FollowState(worker_id=row.id, goal=WorkerStatus.STOPPED), worker_id=row.id)
    log.info("idle-detection: stopped %s (idle since %s)", worker.name, idle_since(worker))
    return "stopped"


class IdleRun(Report):
    checked: int = Field(description="Running workers with CML available and idle detection on")
    stopped: int
    active: int
    failed: int
    stopped_ids: list[str]


async def idle_detection(ctx: Context) -> IdleRun:
    async with ctx.db.session(write=False) as session:
        candidates = (
            await session.scalars(
                select(WorkerRow).where(
                    WorkerRow.status == WorkerStatus.RUNNING,
                    WorkerRow.service_status == ServiceStatus.AVAILABLE,
                    WorkerRow.idle_detection_enabled.is_(True),
                )
            )
        ).all()
    now = datetime.now(UTC)
    slots = asyncio.Semaphore(ctx.settings.metrics_concurrency)
    outcome: dict[str, list[str]] = {"stopped": [], "active": [], "failed": []}

    deadline = ctx.host_deadline()

    async def one(worker: WorkerRow) -> None:
        async with slots:
            try:
                outcome[await check_worker(ctx, worker, now, deadline)].append(worker.id)
            except (CMLError, AppError, TimeoutError) as exc:
                outcome["failed"].append(worker.id)
                log.warning("idle-detection: %s: %s", worker.name, exc or "out of time")

    await asyncio.gather(*(one(worker) for worker in candidates))
    return IdleRun(
        checked=len(candidates),
        stopped=len(outcome["stopped"]),
        active=len(outcome["active"]),
        failed=len(outcome["failed"]),
        stopped_ids=outcome["stopped"],
    )
