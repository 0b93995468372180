"""The background worker: scheduler + command runner + heartbeat. No public HTTP; an optional health port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Generator
from datetime import timedelta
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import update
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..config import ProcessRole, Settings
from ..jobs import processes
from ..jobs.commands import CommandRunner
from ..jobs.context import CommandType, Context
from ..jobs.integrations import Integrations
from ..jobs.scheduler import RunReport, Scheduler
from ..stopping import finish
from ..storage.db import Database
from ..storage.models import CommandRow, JobRunRow
from ..system import service as system_settings
from ..system.schemas import RunJob
from . import registry
from .runtime import Runtime, open_runtime

log = logging.getLogger(__name__)


def process_id(role: ProcessRole) -> str:
    return f"{role}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class JobsHealth(BaseModel):
    total: int = Field(description="Jobs enabled")
    running: int
    next_run: dict[str, str | None] = Field(description="Job -> its next tick (null: disabled)")


class CommandsHealth(BaseModel):
    running: int


class WorkerHealth(BaseModel):
    """What the worker's health port answers at /health."""

    status: str = Field(description="ok, stopping or unavailable")
    reasons: dict[str, str]
    process: str
    scheduler: str
    jobs: JobsHealth
    commands: CommandsHealth


class WorkerRuntime:
    """Everything the worker role runs; `all` mode starts the same object inside the API process."""

    def __init__(self, db: Database, settings: Settings, integrations: Integrations, role: ProcessRole) -> None:
        self.db = db
        self.settings = settings
        self.role = role
        self.process_id = process_id(role)
        self.ctx = Context(db=db, settings=settings, integrations=integrations, process_id=self.process_id)
        self.scheduler = Scheduler(self.ctx, registry.jobs(), overrides=system_settings.get_all)
        run_job = CommandType(RunJob, self._run_job, "Run a scheduled job now")
        self.runner = CommandRunner(self.ctx, [*registry.commands(), run_job])
        self.stop_event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: asyncio.Task[None] | None = None
        self._drained = asyncio.Event()
        self._beat_at = time.monotonic()  # the last heartbeat the database took

    async def _run_job(self, ctx: Context, payload: RunJob) -> RunReport:
        return await self.scheduler.run_now(payload.job)

    async def start(self, wake_on: Any = None) -> None:
        await self.scheduler.refresh_plans()
        await self._heartbeat()
        self._tasks = [
            asyncio.create_task(self.scheduler.run(self.stop_event), name="scheduler"),
            asyncio.create_task(self.runner.run(self.stop_event), name="commands"),
            asyncio.create_task(self._keepalive(), name="keepalive"),
        ]
        if wake_on is not None:
            self._listener = asyncio.create_task(wake_on(self.runner.wake.set), name="command-wakeups")
        enabled = {n: p for n, p in self.scheduler.plans.items() if p.enabled}
        log.info(
            "worker %s: %d scheduled job(s), %d command type(s)",
            self.process_id,
            len(enabled),
            len(self.runner.types),
        )
        next_runs = self.scheduler.next_runs()
        for name, plan in self.scheduler.plans.items():
            state = f"every {plan.interval:g}s, next run {next_runs[name]}" if plan.enabled else "disabled"
            log.info("  job %-15s %s", name, state)

    async def _keepalive(self) -> None:
        """Heartbeat and lease renewal in one loop, in the database's clock."""
        period = min(self.settings.worker_heartbeat_seconds, self.settings.lease_seconds / 3)
        while not self._drained.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period):
                    await self._drained.wait()
                    return
            try:
                await self._heartbeat()
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)

    async def _heartbeat(self) -> None:
        async with self.db.session() as session:
            now = await self.db.now(session)
            lease_end = now + timedelta(seconds=self.settings.lease_seconds)
            await processes.beat(
                session,
                process_id=self.process_id,
                role=self.role.value,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                now=now,
                jobs=processes.Work(running=sorted(self.scheduler.running), commands=len(self.runner.running)),
            )
            if runs := self.scheduler.running_run_ids():
                await session.execute(
                    update(JobRunRow)
                    .where(JobRunRow.id.in_(runs), JobRunRow.claimed_by == self.process_id)
                    .where(JobRunRow.lease_expires_at > JobRunRow.started_at)  # not released meanwhile
                    .values(lease_expires_at=lease_end)
                )
            if commands := list(self.runner.running):
                await session.execute(
                    update(CommandRow)
                    .where(CommandRow.id.in_(commands), CommandRow.claimed_by == self.process_id)
                    .values(lease_expires_at=lease_end)
                )
        self._beat_at = time.monotonic()

    def readiness(self) -> tuple[str, dict[str, str]]:
        """("ok" | "stopping" | "unavailable", reasons), from what the worker already knows: no I/O. The database
        counts as down once no heartbeat reached it for a lease period, when this worker's leases lapse too."""
        reasons = {}
        silent = time.monotonic() - self._beat_at
        if silent > self.settings.lease_seconds:
            reasons["database"] = (
                f"no heartbeat stored for {silent:.0f} s (LEASE_SECONDS={self.settings.lease_seconds:g})"
            )
        if self.stop_event.is_set():
            return "stopping", reasons
        return ("unavailable" if reasons else "ok"), reasons

    def health(self) -> WorkerHealth:
        status, reasons = self.readiness()
        return WorkerHealth(
            status=status,
            reasons=reasons,
            process=self.process_id,
            scheduler=self.scheduler.state,
            jobs=JobsHealth(
                total=sum(1 for plan in self.scheduler.plans.values() if plan.enabled),
                running=len(self.scheduler.running),
                next_run=self.scheduler.next_runs(),
            ),
            commands=CommandsHealth(running=len(self.runner.running)),
        )

    async def stop(self) -> None:
        """Stop claiming, let running work finish within the grace period, cancel the rest, release claims."""
        if self.stop_event.is_set():
            return
        log.info("worker stopping: no new claims")
        self.stop_event.set()
        self.runner.wake.set()
        grace = self.settings.shutdown_grace_seconds
        # The claim loops first: a claim in flight (it awaits the database) spawns its run when it lands, which a
        # drain started earlier would not see, and that run would outlive the worker and its closed clients.
        loops = [task for task in self._tasks if task.get_name() in ("scheduler", "commands")]
        await finish(loops, grace)
        await asyncio.gather(self.scheduler.drain(grace), self.runner.drain(grace))
        self._drained.set()  # leases are renewed until here
        if self._listener is not None:
            self._listener.cancel()  # a pub/sub subscription: no transaction to interrupt
            await asyncio.wait([self._listener])
        for task in await finish(self._tasks, grace):
            log.warning("%s did not stop by itself and was cancelled", task.get_name())
        try:
            async with self.db.session() as session:
                await processes.forget(session, self.process_id)
        except Exception as exc:
            log.warning("could not remove the heartbeat record: %s", exc)
        log.info("worker stopped")


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the worker's signal handlers stay in charge."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def health_app(runtime: WorkerRuntime) -> Starlette:
    """The worker's health port. Every answer comes from memory: no probe waits for the database or Redis."""

    async def health_endpoint(request: Request) -> JSONResponse:
        body = runtime.health()
        return JSONResponse(body.model_dump(), status_code=200 if body.status == "ok" else 503)

    async def live(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> JSONResponse:
        status, reasons = runtime.readiness()
        return JSONResponse({"status": status, "reasons": reasons}, status_code=200 if status == "ok" else 503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/health", health_endpoint),
            Route("/health/live", live),
            Route("/health/ready", ready),
            Route("/metrics", metrics),
        ]
    )


def yield_cpu(nice: int) -> int:
    """Lower this process's CPU priority to niceness `nice` (never raise it); returns the niceness in force.

    Linux keeps a niceness per thread and a new thread inherits its creator's, so every thread running now is
    lowered (called before the runtime starts any, it is the main thread alone). Against the API this applies
    only where both share a scheduling group: `up` starts them in one session, hence one autogroup
    (docs/adr/0006-worker-cpu-priority.md); separate services weigh through their cgroups instead."""
    threads = [int(tid) for tid in os.listdir("/proc/self/task")] if os.path.isdir("/proc/self/task") else [0]
    for tid in threads:
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
    return os.getpriority(os.PRIO_PROCESS, 0)


async def serve_worker(settings: Settings, *, health_port: int | None = None) -> None:
    """The `worker` command: runs until SIGINT/SIGTERM, at niceness WORKER_NICE."""
    try:
        log.info("worker CPU niceness %d", yield_cpu(settings.worker_nice))
    except OSError as exc:  # a sandbox forbidding setpriority: the worker still works, only less politely
        log.warning("could not lower the worker's CPU priority to niceness %d: %s", settings.worker_nice, exc)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with open_runtime(settings, ProcessRole.WORKER) as runtime:
        await _run_until(runtime, settings, stop, health_port)


async def _run_until(runtime: Runtime, settings: Settings, stop: asyncio.Event, health_port: int | None) -> None:
    worker = WorkerRuntime(runtime.db, settings, runtime.integrations, ProcessRole.WORKER)
    await worker.start(wake_on=lambda cb: runtime.notifier.listen(runtime.notifier.commands_channel, cb))
    server = None
    server_task = None
    if health_port is not None:
        config = uvicorn.Config(
            health_app(worker),
            host=settings.worker_health_host,
            port=health_port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        server = QuietServer(config)
        server_task = asyncio.create_task(server.serve(), name="health-server")
        log.info("health endpoint: http://%s:%d/health", settings.worker_health_host, health_port)
    log.info("worker running; press Ctrl+C to stop")
    await stop.wait()
    await worker.stop()
    if server is not None and server_task is not None:
        server.should_exit = True
        await server_task
