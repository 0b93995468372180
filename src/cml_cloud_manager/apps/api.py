"""The API application: `create_app(role)` — REST, SSE, UI. Background work only when role is `all`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp

from .. import __version__
from ..auth import admin as tokens
from ..auth import credentials
from ..auth import endpoints as auth
from ..auth.guard import PUBLIC, Authenticator, needs
from ..auth.roles import Role
from ..config import ProcessRole, Settings
from ..events import catalogue, sse
from ..events.relay import Hub
from ..health import endpoints as health
from ..health.checks import HealthChecks
from ..jobs import endpoints as commands
from ..jobs import processes
from ..labs import endpoints as labs
from ..licensing import endpoints as licensing
from ..stopping import finish
from ..system import endpoints as system
from ..web import problems
from ..web.server_send import ServerSend
from ..workers import endpoints as workers
from ..workers import exclusions
from ..workers.readmodel import Fleet
from ..workers.service import snapshot
from . import registry
from .http_metrics import HttpMetrics
from .runtime import open_runtime
from .security import SecurityMiddleware
from .worker import WorkerRuntime, process_id

log = logging.getLogger(__name__)
UI = Path(__file__).parent.parent / "ui"
DEFAULT_GC_THRESHOLD = gc.get_threshold()


def banner(settings: Settings, role: ProcessRole) -> str:
    base = settings.base_url()
    jobs = "ENABLED (combined mode: this process also runs the worker)" if role.runs_jobs else "DISABLED"
    return "\n".join(
        [
            f"CML Cloud Manager {__version__} — role: {role}",
            f"  API:   {base}/api",
            f"  Docs:  {base}/api/docs",
            f"  UI:    {base}/",
            f"  SSE:   {base}/api/events/stream",
            f"  Background jobs: {jobs}",
        ]
    )


class Api(FastAPI):
    def build_middleware_stack(self) -> ASGIApp:
        # Outside every middleware, Starlette's error handler included (see `ServerSend`).
        return ServerSend(super().build_middleware_stack())


def tune_gc() -> None:
    """Garbage-collector pauses, not CPU, set the API's tail latency (measured in `make bench`).

    Start-up leaves ~170,000 long-lived objects (FastAPI, pydantic, SQLAlchemy, boto3) that every full
    collection would walk again (~100 ms each): frozen, they are never scanned. Each young collection promotes
    whatever requests and streams have in flight, and those promotions trigger the full collections (every
    few seconds with 1,000 SSE clients): collecting young objects every 50,000 allocations instead of 700
    promotes far less. Memory is still freed by reference counting as before; only cycles wait longer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)


def create_app(role: ProcessRole, settings: Settings) -> FastAPI:
    if not role.serves_http:
        raise ValueError(f"role {role} serves no HTTP; use apps.worker.serve_worker")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings, role) as runtime:
            hub = Hub(runtime.db, runtime.notifier, settings, snapshot)
            runtime.on_events.append(hub.wake)
            runtime.applied = hub.reached
            authenticator = Authenticator(settings, runtime.db)
            # On every replica, a revoked token or an ended session is forgotten, and its SSE streams end.
            # And the fleet the API serves is kept current.
            app.state.fleet = fleet = Fleet()
            hub.consumers += [
                authenticator.known_tokens,
                authenticator.known_sessions,
                credentials.StreamEnding(hub.end_streams),
                fleet,
            ]
            hub.access = credentials.StreamAccess(authenticator)
            app.state.runtime = runtime
            app.state.db = runtime.db
            app.state.hub = hub
            app.state.authenticator = authenticator
            app.state.health_checks = checks = HealthChecks(runtime.db, runtime.notifier, settings)
            await authenticator.start()
            await hub.start()
            api_id = process_id(ProcessRole.API)
            stop_beating = asyncio.Event()
            beating = asyncio.create_task(
                processes.keep_beating(
                    runtime.db, stop_beating, process_id=api_id, role="api", every=settings.worker_heartbeat_seconds
                ),
                name="api-heartbeat",
            )
            worker = None
            if role.runs_jobs:
                worker = WorkerRuntime(runtime.db, settings, runtime.integrations, role)
                runtime.on_commands.append(worker.runner.wake.set)
                await worker.start(wake_on=lambda cb: runtime.notifier.listen(runtime.notifier.commands_channel, cb))
            log.info("%s", banner(settings, role))
            tune_gc()
            try:
                yield
            finally:
                gc.unfreeze()
                gc.set_threshold(*DEFAULT_GC_THRESHOLD)
                stop_beating.set()
                await hub.shutdown()
                checks.close()
                await finish([beating], settings.shutdown_grace_seconds)
                with contextlib.suppress(Exception):  # a stale row ages out of the health page anyway
                    async with runtime.db.session() as session:
                        await processes.forget(session, api_id)
                if worker is not None:
                    await worker.stop()
                await authenticator.aclose()

    app = Api(
        title="CML Cloud Manager",
        version=__version__,
        docs_url=None,  # Swagger UI would come from a CDN under 'unsafe-inline'; our own page is below
        redoc_url=None,
        openapi_url="/api/openapi.json",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.role = role
    app.state.jobs = registry.jobs()
    problems.install(app)
    app.state.routers = [m.router for m in (auth, tokens, health)]
    app.state.routers += [sse.router(needs(Role.VIEWER)), catalogue.router(needs(Role.VIEWER), registry.events())]
    app.state.routers += [m.router for m in (workers, exclusions, labs, licensing, commands, system)]
    for router in app.state.routers:
        app.include_router(router, responses=problems.PROBLEM_RESPONSES)
    app.mount("/static", StaticFiles(directory=UI / "static"), name="static")

    @app.get("/", include_in_schema=False, dependencies=PUBLIC)
    async def index() -> FileResponse:
        return FileResponse(UI / "index.html")

    @app.get("/api/docs", include_in_schema=False, dependencies=PUBLIC)
    async def api_docs() -> FileResponse:
        return FileResponse(UI / "docs.html")

    app.add_middleware(
        SecurityMiddleware, max_body=settings.max_request_bytes, loopback_only=settings.auth_mode == "none"
    )
    app.add_middleware(HttpMetrics)
    return app
