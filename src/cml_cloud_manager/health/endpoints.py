"""Health of the API process: `/api/health` (public: each component's state), `/api/health/details` (viewer:
which processes are alive), the probes `/api/health/live` and `/api/health/ready`, and `/metrics`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from sqlalchemy import func, select

from ..auth.guard import PUBLIC, needs
from ..auth.roles import Role
from ..config import ProcessRole, Settings
from ..events.relay import Hub, HubDep
from ..jobs.processes import Fleet, WorkerLiveness, WorkerPresence
from ..storage.models import WorkerRow
from ..web.deps import DatabaseDep, SettingsDep
from ..workers.domain import WorkerStatus
from .checks import HealthChecks, Outcome
from .schemas import Components, ComponentsDetails, Health, HealthDetails, Liveness, Readiness

router = APIRouter(tags=["health"])


async def _health_checks(request: Request) -> HealthChecks:
    checks: HealthChecks = request.app.state.health_checks
    return checks


HealthChecksDep = Annotated[HealthChecks, Depends(_health_checks)]

# One sentence per reason, for people (the UI's banner); `reasons` gives the same per component, for machines.
SENTENCES = {
    "database": "The database cannot be reached ({}).",
    "redis": "Redis cannot be reached ({}): live updates arrive by polling, a little later.",
    "worker": "No worker process is alive: reads work, commands are queued until a worker starts.",
}


def _verdict(
    database: Outcome[Any], redis: Outcome[None], worker: str | None = None
) -> tuple[str, dict[str, str], int]:
    """(status, reasons by component, HTTP status): only the database makes this replica unavailable."""
    found = {"database": database.reason, "redis": redis.reason, "worker": worker}
    reasons = {name: reason for name, reason in found.items() if reason}
    if database.state == "down":
        return "unavailable", reasons, 503
    return ("degraded" if reasons else "ok"), reasons, 200


async def _report(
    request: Request, checks: HealthChecks, hub: Hub, settings: Settings, *, details: bool
) -> JSONResponse:
    """Health within the checks' deadline. Public: each component's state. With `details`: the live worker
    processes and API replicas too, whose ids name hosts and process ids."""
    role: ProcessRole = request.app.state.role
    database, redis = await checks.run()
    fleet = database.value or Fleet(
        worker=WorkerLiveness(alive=False, replicas=0, last_heartbeat=None, processes=[]), api_replicas=[]
    )
    worker = fleet.worker
    no_worker = database.state == "up" and not worker.alive
    status, reasons, code = _verdict(
        database, redis, worker=f"no heartbeat within {settings.worker_alive_seconds:g} s" if no_worker else None
    )
    message = " ".join(SENTENCES[name].format(reason) for name, reason in reasons.items()) or None
    shared = {
        "database": database.state,
        "redis": redis.state,
        "sse_clients": len(hub.clients),
        "background_jobs": "enabled" if role.runs_jobs else "disabled",
    }
    health: Health
    if details:
        components = ComponentsDetails(**shared, worker=worker, api_replicas=fleet.api_replicas)
        health = HealthDetails(status=status, role=role, components=components, reasons=reasons, message=message)
    else:
        presence = WorkerPresence(alive=worker.alive, replicas=worker.replicas, last_heartbeat=worker.last_heartbeat)
        public = Components(**shared, worker=presence)
        health = Health(status=status, role=role, components=public, reasons=reasons, message=message)
    return JSONResponse(health.model_dump(mode="json"), status_code=code)


UNAVAILABLE = "The database is down: this replica cannot serve requests"


@router.get(
    "/api/health",
    dependencies=PUBLIC,
    summary="Is the API usable, and is a worker alive? Each component's state, within HEALTH_TIMEOUT_SECONDS",
    response_model=Health,
    responses={503: {"model": Health, "description": UNAVAILABLE}},
)
async def health(request: Request, checks: HealthChecksDep, hub: HubDep, settings: SettingsDep) -> JSONResponse:
    return await _report(request, checks, hub, settings, details=False)


@router.get(
    "/api/health/details",
    dependencies=needs(Role.VIEWER),
    summary="The same, with the live worker processes and API replicas",
    response_model=HealthDetails,
    responses={503: {"model": HealthDetails, "description": UNAVAILABLE}},
)
async def health_details(request: Request, checks: HealthChecksDep, hub: HubDep, settings: SettingsDep) -> JSONResponse:
    return await _report(request, checks, hub, settings, details=True)


@router.get("/api/health/live", dependencies=PUBLIC, summary="Liveness: this process serves HTTP (nothing else asked)")
async def live() -> Liveness:
    # Neither the database nor Redis: an outage of either must never make every replica fail this at once.
    return Liveness(status="ok")


@router.get(
    "/api/health/ready",
    dependencies=PUBLIC,
    summary="Readiness: this replica can serve requests (the database answers; Redis only degrades)",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": UNAVAILABLE}},
)
async def ready(checks: HealthChecksDep) -> JSONResponse:
    database, redis = await checks.run()
    status, reasons, code = _verdict(database, redis)
    body = Readiness.model_validate(
        {"status": status, "components": {"database": database.state, "redis": redis.state}, "reasons": reasons}
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=code)


FLEET_CPU = Gauge("fleet_cpu_percent_avg", "Average CPU % of running CML workers, from their latest sample")


@router.get("/metrics", include_in_schema=False, dependencies=PUBLIC)
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
