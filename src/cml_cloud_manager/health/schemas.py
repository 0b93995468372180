"""What the health endpoints answer: the public view (each component's state) and the details a viewer may see
(which processes are alive)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from ..config import ProcessRole
from ..jobs.processes import ApiReplica, WorkerLiveness, WorkerPresence

State = Literal["up", "down", "disabled"]
Verdict = Literal["ok", "degraded", "unavailable"]


class Components(BaseModel):
    database: State
    redis: State
    sse_clients: int = Field(description="Server-sent event streams open on this replica")
    background_jobs: Literal["enabled", "disabled"] = Field(description="Whether this process runs jobs")
    worker: WorkerPresence


class ComponentsDetails(Components):
    worker: WorkerLiveness
    api_replicas: list[ApiReplica]


class Health(BaseModel):
    status: Verdict = Field(description="unavailable (503) only when the database is down")
    role: ProcessRole = Field(description="The process role of this replica")
    components: Components
    reasons: dict[str, str] = Field(description="Why, per component, when not ok")
    message: str | None = Field(
        None, exclude_if=lambda v: v is None, description="The reasons in sentences, for people; absent when ok"
    )


class HealthDetails(Health):
    components: ComponentsDetails


class Liveness(BaseModel):
    status: Literal["ok"]


class ReadyComponents(BaseModel):
    database: State
    redis: State


class Readiness(BaseModel):
    status: Verdict
    components: ReadyComponents
    reasons: dict[str, str]
