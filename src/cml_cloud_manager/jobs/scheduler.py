"""Interval jobs, each tick claimed in the database so every tick runs once across all worker replicas.

A tick is `floor(db_now / interval) * interval`; the unique (job_name, scheduled_at) row is the claim. Ticks
missed while a run was going (or while no worker was up) collapse into the current one. A claim carries a lease
that the running process renews; a claim whose lease lapsed (its process died) is taken over by another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Request
from prometheus_client import Counter, Histogram
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..config import Settings
from ..errors import Conflict
from ..events import outbox
from ..stopping import finish
from ..storage.models import JobRunRow
from ..storage.retry import retry_on_contention
from .context import Context, Job, Report
from .events import JobRunCompleted, JobRunStarted

log = logging.getLogger(__name__)

JOB_EXECUTIONS = Counter("job_executions_total", "Job runs by outcome", ["job_name", "outcome"])
JOB_DURATION = Histogram(
    "job_duration_seconds",
    "Job run duration",
    ["job_name"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
MAX_ATTEMPTS = 3

# Runtime overrides of the settings (`jobs.<name>.enabled`, `jobs.<name>.interval_seconds`), read in a session.
Override = bool | float  # a job's switch or its interval in seconds
Overrides = Callable[[AsyncSession], Awaitable[Mapping[str, Override]]]


@dataclass(frozen=True)
class JobPlan:
    enabled: bool
    interval: float

    @property
    def timeout(self) -> float:
        # Below the interval, so a run always ends before the next tick wants to start.
        return max(0.5, self.interval * 0.9)

    def tick(self, now: datetime) -> datetime:
        return datetime.fromtimestamp(math.floor(now.timestamp() / self.interval) * self.interval, UTC)

    def next_tick(self, now: datetime) -> datetime:
        return self.tick(now) + timedelta(seconds=self.interval)


class RunReport(Report):
    """How a run went: what an operator's "run now" command reports (the job's own summary is on the run)."""

    run_id: int
    outcome: str
    error: str
    duration_seconds: float


class JobBusy(Conflict):
    code = "job_busy"


def plan_for(job: Job, settings: Settings, overrides: Mapping[str, Override]) -> JobPlan:
    """A job's interval and switch: env settings, then runtime overrides from system settings."""
    enabled = overrides.get(f"jobs.{job.name}.enabled", settings.job_enabled(job.name))
    interval = overrides.get(f"jobs.{job.name}.interval_seconds", settings.job_intervals()[job.name])
    return JobPlan(enabled=bool(enabled), interval=float(interval))


async def _jobs(request: Request) -> list[Job]:
    jobs: list[Job] = request.app.state.jobs
    return jobs


# The jobs apps/ registered, for the endpoints that list and run them.
JobsDep = Annotated[list[Job], Depends(_jobs)]


class Scheduler:
    def __init__(self, ctx: Context, jobs: list[Job], *, overrides: Overrides) -> None:
        self.ctx = ctx
        self.overrides = overrides  # the system slice's, handed in by apps/
        self.jobs = {job.name: job for job in jobs}
        self.running: dict[str, tuple[int, asyncio.Task[RunReport]]] = {}
        self.attempted: dict[str, datetime] = {}
        # Claim-then-spawn is not atomic (the claim awaits the database); this keeps a scheduled start and a
        # "run now" in this process from both claiming.
        self._claiming = {name: asyncio.Lock() for name in self.jobs}
        self.plans: dict[str, JobPlan] = {name: self._plan(name, {}) for name in self.jobs}
        self.state = "stopped"
        self._last_now = datetime.now(UTC)

    def _plan(self, name: str, overrides: Mapping[str, Override]) -> JobPlan:
        return plan_for(self.jobs[name], self.ctx.settings, overrides)

    def next_runs(self) -> dict[str, str | None]:
        return {
            name: plan.next_tick(self._last_now).isoformat() if plan.enabled else None
            for name, plan in self.plans.items()
        }

    async def refresh_plans(self) -> None:
        async with self.ctx.db.session(write=False) as session:
            overrides = await self.overrides(session)
            self._last_now = await self.ctx.db.now(session)
        self.plans = {name: self._plan(name, overrides) for name in self.jobs}

    async def run(self, stop: asyncio.Event) -> None:
        self.state = "running"
        try:
            while not stop.is_set():
                try:
                    await self.refresh_plans()
                    await self._take_over_lapsed()
                    for name, plan in self.plans.items():
                        if plan.enabled and name not in self.running:
                            await self._maybe_start(name, plan)
                except Exception as exc:  # keep ticking through database outages
                    log.warning("scheduler loop error: %s", exc)
                pause = min([1.0] + [self._until_next(p) for p in self.plans.values() if p.enabled])
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.01, pause)):
                        await stop.wait()
        finally:
            self.state = "stopped"

    def _until_next(self, plan: JobPlan) -> float:
        return (plan.next_tick(self._last_now) - self._last_now).total_seconds() + 0.005

    async def _maybe_start(self, name: str, plan: JobPlan) -> None:
        tick = plan.tick(self._last_now)
        if self.attempted.get(name) == tick:
            return
        self.attempted[name] = tick
        async with self._claiming[name]:
            if name in self.running:
                return
            run_id = await self._claim(name, tick, plan, trigger="schedule")
            if run_id is not None:
                self._spawn(name, run_id, plan.timeout, "schedule")

    @retry_on_contention
    async def _claim(self, name: str, tick: datetime, plan: JobPlan, *, trigger: str) -> int | None:
        try:
            async with self.ctx.db.session() as session:
                if not self.ctx.db.is_sqlite:  # one claimer per job at a time; SQLite's write lock does this
                    await session.execute(select(func.pg_advisory_xact_lock(zlib.crc32(name.encode()))))
                now = await self.ctx.db.now(session)
                busy = await session.scalar(
                    select(JobRunRow.id)
                    .where(
                        JobRunRow.job_name == name,
                        JobRunRow.outcome == "running",
                        JobRunRow.lease_expires_at > now,
                    )
                    .limit(1)
                )
                if busy is not None:
                    if trigger == "manual":
                        raise JobBusy(f"Job '{name}' is already running (run {busy})")
                    return None
                if trigger == "schedule" and await session.scalar(
                    select(JobRunRow.id).where(JobRunRow.job_name == name, JobRunRow.scheduled_at == tick)
                ):
                    return None
                row = JobRunRow(
                    job_name=name,
                    scheduled_at=tick,
                    trigger=trigger,
                    claimed_by=self.ctx.process_id,
                    lease_expires_at=now + timedelta(seconds=self.ctx.settings.lease_seconds),
                    started_at=now,
                )
                session.add(row)
                await session.flush()
                await self._started(session, row, attempt=1)
                return row.id
        except IntegrityError:
            return None  # another replica claimed the same tick a moment earlier

    @retry_on_contention
    async def _take_over_lapsed(self) -> None:
        """Claims whose process stopped renewing them: rerun here (or give up after MAX_ATTEMPTS)."""
        async with self.ctx.db.session() as session:
            now = await self.ctx.db.now(session)
            lapsed = (
                await session.scalars(
                    select(JobRunRow).where(JobRunRow.outcome == "running", JobRunRow.lease_expires_at <= now)
                )
            ).all()
            taken: list[JobRunRow] = []
            for row in lapsed:
                if row.job_name not in self.jobs or row.job_name in self.running:
                    continue
                attempt, previous = row.attempts + 1, row.claimed_by  # the UPDATE below refreshes `row`
                values: dict[str, Any] = {"claimed_by": self.ctx.process_id, "attempts": attempt}
                if row.attempts >= MAX_ATTEMPTS:
                    values = {"outcome": "abandoned", "finished_at": now, "error": "its process stopped"}
                elif row.trigger == "manual":
                    # The "run now" command that started it is retried by the command queue: running it here
                    # as well would run the job twice for one request.
                    reason = "its process stopped; the command that asked for it is retried"
                    values = {"outcome": "abandoned", "finished_at": now, "error": reason}
                else:
                    values["lease_expires_at"] = now + timedelta(seconds=self.ctx.settings.lease_seconds)
                result = await session.execute(
                    update(JobRunRow)
                    .where(JobRunRow.id == row.id, JobRunRow.claimed_by == previous)
                    .where(JobRunRow.lease_expires_at <= now)
                    .values(**values)
                )
                if result.rowcount == 1 and "lease_expires_at" in values:  # type: ignore[attr-defined]
                    log.warning("taking over job %s run %d from %s", row.job_name, row.id, previous)
                    await self._started(session, row, attempt=attempt, taken_from=previous)
                    taken.append(row)
        for row in taken:
            self._spawn(row.job_name, row.id, self.plans[row.job_name].timeout, row.trigger)

    async def _started(
        self, session: AsyncSession, row: JobRunRow, *, attempt: int, taken_from: str | None = None
    ) -> None:
        started = JobRunStarted(
            job=row.job_name,
            run_id=row.id,
            trigger=row.trigger,
            claimed_by=self.ctx.process_id,
            attempt=attempt,
            taken_from=taken_from,
        )
        await outbox.append(session, started, subject=row.job_name)

    def _spawn(self, name: str, run_id: int, timeout: float, trigger: str) -> asyncio.Task[RunReport]:
        task = asyncio.create_task(self._execute(name, run_id, timeout, trigger), name=f"job:{name}")
        self.running[name] = (run_id, task)
        task.add_done_callback(lambda _: self.running.pop(name, None))
        return task

    async def run_now(self, name: str) -> RunReport:
        """Run a job immediately (an operator's 'run now') and return how it went. A run already going in
        this process is awaited first; one going on another replica makes this a conflict."""
        while True:
            async with self._claiming[name]:
                if name not in self.running:
                    plan = self.plans[name]
                    run_id = await self._claim(name, datetime.now(UTC), plan, trigger="manual")
                    if run_id is None:
                        raise JobBusy(f"Job '{name}' could not be claimed")
                    task = self._spawn(name, run_id, plan.timeout, "manual")
                    break
                current = self.running[name][1]
            await asyncio.wait([current])
        return await task

    async def _execute(self, name: str, run_id: int, timeout: float, trigger: str) -> RunReport:
        log.info("job %s started (run %d, %s, timeout %.0fs)", name, run_id, trigger, timeout)
        began = time.perf_counter()
        outcome, error, summary = "success", "", None
        try:
            async with asyncio.timeout(timeout) as deadline:
                ctx = self.ctx.with_deadline(asyncio.get_running_loop().time() + timeout)
                summary = (await self.jobs[name].func(ctx)).model_dump(mode="json")
        except TimeoutError:
            if not deadline.expired():
                raise
            outcome, error = "timeout", f"did not finish within {timeout:.1f}s"
        except asyncio.CancelledError:
            await asyncio.shield(self._release(run_id))
            log.warning("job %s interrupted (run %d); its claim is released", name, run_id)
            raise
        except Exception as exc:
            outcome, error = "failure", f"{type(exc).__name__}: {exc}"
            log.exception("job %s failed (run %d)", name, run_id)
        duration = time.perf_counter() - began
        JOB_EXECUTIONS.labels(name, outcome).inc()
        JOB_DURATION.labels(name).observe(duration)
        await self._record(name, run_id, outcome, error, summary, duration, trigger)
        log.info("job %s finished: %s in %.2fs (run %d) %s", name, outcome, duration, run_id, error)
        return RunReport(run_id=run_id, outcome=outcome, error=error, duration_seconds=round(duration, 3))

    async def _record(
        self,
        name: str,
        run_id: int,
        outcome: str,
        error: str,
        summary: dict[str, Any] | None,
        duration: float,
        trigger: str,
    ) -> None:
        # Lost, the result would leave the run "running" until its lease lapsed and another replica ran it again.
        @retry_on_contention
        async def record() -> None:
            async with self.ctx.db.session() as session:
                now = await self.ctx.db.now(session)
                result = await session.execute(
                    update(JobRunRow)
                    .where(JobRunRow.id == run_id, JobRunRow.claimed_by == self.ctx.process_id)
                    .values(outcome=outcome, error=error, summary=summary, finished_at=now)
                )
                if result.rowcount != 1:  # type: ignore[attr-defined]
                    log.warning("job %s run %d was taken over; not recording this result", name, run_id)
                    return
                completed = JobRunCompleted(
                    job=name,
                    run_id=run_id,
                    trigger=trigger,
                    outcome=outcome,
                    error=error,
                    duration_seconds=round(duration, 3),
                    summary=summary,
                )
                await outbox.append(session, completed, subject=name)

        try:
            await record()
        except Exception as exc:
            log.error("could not record the result of job %s run %d: %s", name, run_id, exc)

    async def _release(self, run_id: int) -> None:
        """Expire our lease at once, so another replica reruns the interrupted tick without waiting. A released
        lease ends when its run started, a mark no renewal outlives: the heartbeat renews only leases that end
        later (`apps.worker`), so one already in flight cannot extend this one again after it is released."""
        try:
            async with self.ctx.db.session() as session:
                await session.execute(
                    update(JobRunRow)
                    .where(JobRunRow.id == run_id, JobRunRow.claimed_by == self.ctx.process_id)
                    .values(lease_expires_at=JobRunRow.started_at)
                )
        except Exception as exc:
            log.error("could not release job run %d: %s", run_id, exc)

    def running_run_ids(self) -> list[int]:
        return [run_id for run_id, _ in self.running.values()]

    async def drain(self, grace: float) -> None:
        """Let running jobs finish within `grace` seconds, then cancel them (which releases their claims)."""
        tasks = [task for _, task in self.running.values()]
        if not tasks:
            return
        log.info("waiting up to %.0fs for %d running job(s)", grace, len(tasks))
        await finish(tasks, grace)
