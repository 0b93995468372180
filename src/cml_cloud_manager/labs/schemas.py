"""What the API says about labs, and the payloads of the lab commands (`labs.refresh`'s is in workers, which
queues it too)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..jobs.context import Report
from ..workers.schemas import WorkerCommand

LabOperation = Literal["start", "stop", "wipe", "delete"]


class LabStateEntry(BaseModel):
    state: str
    at: datetime
    reason: str


class LabOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    worker_id: str
    cml_lab_id: str
    title: str
    description: str
    state: str
    owner: str
    node_count: int
    link_count: int
    cml_created_at: datetime | None
    cml_modified_at: datetime | None
    updated_at: datetime
    history: list[LabStateEntry] = Field(description="Its last 20 states, oldest first")

    @field_validator("history", mode="before")
    @classmethod
    def _states(cls, value: Any) -> Any:
        # A lab row keeps them as {"states": [...]}, the JSON column's shape.
        return value.get("states", []) if isinstance(value, dict) else value


class LabAction(WorkerCommand):
    command: ClassVar[str] = "lab.action"

    lab_id: str = Field(min_length=1, description="Our id of the lab")
    action: LabOperation


class ImportLab(WorkerCommand):
    command: ClassVar[str] = "lab.import"

    yaml: str = Field(min_length=1, description="CML topology YAML")
    title: str | None = None


# What the lab commands and the labs-refresh job report.


class LabsSynced(Report):
    """Lab records brought in step with what CML has."""

    added: int
    updated: int
    removed: int


class LabsRefreshRun(LabsSynced):
    workers: int
    failed: dict[str, str] = Field(description="Worker id -> why its CML could not be read")


class LabStateSet(Report):
    lab_id: str
    state: str


class LabDeleted(Report):
    lab_id: str
    deleted: Literal[True] = True


class LabImported(Report):
    lab_id: str
    cml_lab_id: str
    title: str
    warnings: list[str] = Field(description="What CML said about the topology")
