"""`/api/health` and `/metrics` on the API process."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..apps.deps import DatabaseDep, HubDep, SettingsDep
from ..auth.guard import PUBLIC
from ..config import Role
from .service import worker_liveness

router = APIRouter(tags=["health"], dependencies=PUBLIC)


@router.get("/api/health", summary="Is the API usable, and is a worker alive to run jobs and commands?")
async def health(request: Request, db: DatabaseDep, hub: HubDep, settings: SettingsDep) -> JSONResponse:
    role: Role = request.app.state.role
    worker: dict[str, Any] = {"alive": False, "last_heartbeat": None, "replicas": 0}
    database = "down"
    try:
        async with db.session(write=False) as session:
            worker = await worker_liveness(
                session, now=await db.now(session), alive_seconds=settings.worker_alive_seconds
            )
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
        },
    }
    if not worker["alive"] and database == "up":
        body["message"] = "No worker process is alive: reads work, commands are queued until a worker starts."
    return JSONResponse(body, status_code=503 if database == "down" else 200)


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
