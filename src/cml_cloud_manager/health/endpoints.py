"""`/api/health` and `/metrics` on the API process."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from sqlalchemy import func, select

from ..apps.deps import DatabaseDep, HubDep, SettingsDep
from ..auth.guard import PUBLIC
from ..config import Role
from ..storage.models import WorkerRow
from ..workers.domain import WorkerStatus
from .service import api_replicas, worker_liveness

router = APIRouter(tags=["health"], dependencies=PUBLIC)


@router.get("/api/health", summary="Is the API usable, and is a worker alive to run jobs and commands?")
async def health(request: Request, db: DatabaseDep, hub: HubDep, settings: SettingsDep) -> JSONResponse:
    role: Role = request.app.state.role
    worker: dict[str, Any] = {"alive": False, "last_heartbeat": None, "replicas": 0}
    replicas: list[dict[str, Any]] = []
    database = "down"
    try:
        async with db.session(write=False) as session:
            now = await db.now(session)
            worker = await worker_liveness(session, now=now, alive_seconds=settings.worker_alive_seconds)
            replicas = await api_replicas(session, now=now, alive_seconds=settings.worker_alive_seconds)
        database = "up"
    except Exception:  # health must answer even when the database does not
        pass
    redis = await request.app.state.runtime.notifier.ping()
    if database == "down":
        status = "unavailable"
    elif not worker["alive"] or redis == "down":
        status = "degraded"
    else:
        status = "ok"
    body = {
        "status": status,
        "role": role.value,
        "components": {
            "database": database,
            "redis": redis,
            "sse_clients": len(hub.clients),
            "background_jobs": "enabled" if role.runs_jobs else "disabled",
            "worker": worker,
            "api_replicas": replicas,
        },
    }
    if not worker["alive"] and database == "up":
        body["message"] = "No worker process is alive: reads work, commands are queued until a worker starts."
    return JSONResponse(body, status_code=503 if database == "down" else 200)


FLEET_CPU = Gauge("fleet_cpu_percent_avg", "Average CPU % of running CML workers, from their latest sample")


@router.get("/metrics", include_in_schema=False)
async def metrics(db: DatabaseDep) -> Response:
    # Computed at scrape time from the database, so every API replica reports the same fleet figure.
    try:
        async with db.session(write=False) as session:
            average = (
                await session.execute(
                    select(func.avg(WorkerRow.cpu_percent)).where(WorkerRow.status == WorkerStatus.RUNNING)
                )
            ).scalar()
        FLEET_CPU.set(float(average) if average is not None else float("nan"))
    except Exception:  # a scrape must not fail because the database does
        FLEET_CPU.set(float("nan"))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
