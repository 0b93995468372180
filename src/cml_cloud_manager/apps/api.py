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
from ..auth import endpoints as auth
from ..auth.guard import PUBLIC, Authenticator
from ..config import Role, Settings
from ..events import sse
from ..events.relay import Hub
from ..health import endpoints as health
from ..health import service as health_service
from ..jobs import endpoints as commands
from ..labs import endpoints as labs
from ..licensing import endpoints as licensing
from ..stopping import finish
from ..system import endpoints as system
from ..workers import endpoints as workers
from ..workers.service import snapshot
from . import problems
from .http_metrics import HttpMetrics
from .runtime import open_runtime
from .security import SecurityMiddleware
from .server_send import ServerSend
from .worker import WorkerRuntime, process_id

log = logging.getLogger(__name__)
UI = Path(__file__).parent.parent / "ui"
DEFAULT_GC_THRESHOLD = gc.get_threshold()


def banner(settings: Settings, role: Role) -> str:
    base = settings.public_url or f"http://{settings.app_host}:{settings.app_port}"
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


def create_app(role: Role, settings: Settings) -> FastAPI:
    if not role.serves_http:
        raise ValueError(f"role {role} serves no HTTP; use apps.worker.serve_worker")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings, role) as runtime:
            hub = Hub(runtime.db, runtime.notifier, settings)
            runtime.on_events.append(hub.wake)
            authenticator = Authenticator(settings, runtime.db)
            app.state.runtime = runtime
            app.state.db = runtime.db
            app.state.hub = hub
            app.state.authenticator = authenticator
            await authenticator.start()
            await hub.start()
            api_id = process_id(Role.API)
            stop_beating = asyncio.Event()
            beating = asyncio.create_task(
                health_service.keep_beating(
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
                await finish([beating], settings.shutdown_grace_seconds)
                with contextlib.suppress(Exception):  # a stale row ages out of the health page anyway
                    async with runtime.db.session() as session:
                        await health_service.forget(session, api_id)
                if worker is not None:
                    await worker.stop()
                await authenticator.aclose()

    app = Api(
        title="CML Cloud Manager",
        version=__version__,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.role = role
    app.state.snapshot = snapshot
    problems.install(app)
    app.state.routers = [m.router for m in (auth, health, sse, workers, labs, licensing, commands, system)]
    for router in app.state.routers:
        app.include_router(router, responses=problems.PROBLEM_RESPONSES)
    app.mount("/static", StaticFiles(directory=UI / "static"), name="static")

    @app.get("/", include_in_schema=False, dependencies=PUBLIC)
    async def index() -> FileResponse:
        return FileResponse(UI / "index.html")

    app.add_middleware(SecurityMiddleware, max_body=settings.max_request_bytes)
    app.add_middleware(HttpMetrics)
    return app
