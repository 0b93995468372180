"""The data of the worker events, and of the exclusion events (an instance removed from the fleet)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Self

from pydantic import Field, JsonValue

from ..events.data import Changes, EventData
from ..storage.models import WorkerRow
from .schemas import ExclusionOut, WorkerOut


class WorkerCreated(EventData):
    """A worker joined the fleet: created, imported by id, or found by an import by AMI name."""

    types: ClassVar[tuple[str, ...]] = ("worker.created",)

    reason: str = Field(description="How it came, in words")
    worker: WorkerOut


class WorkerStatusUpdated(EventData):
    """A worker's status changed (what EC2 says of its instance, or `failed`)."""

    types: ClassVar[tuple[str, ...]] = ("worker.status.updated",)

    name: str
    previous: str
    status: str
    reason: str = Field(description="Why, in words; empty when nothing is known")


class WorkerDeleted(EventData):
    """A worker left the fleet ("remove from fleet", or deleted with its instance)."""

    types: ClassVar[tuple[str, ...]] = ("worker.deleted",)

    name: str
    instance_terminated: bool


class WorkerIdlePaused(EventData):
    """Idle detection stopped a worker: no relevant CML activity for IDLE_TIMEOUT_MINUTES."""

    types: ClassVar[tuple[str, ...]] = ("worker.idle.paused",)

    name: str
    idle_since: datetime | None = Field(description="Its last activity, resume or launch, whichever is latest")
    auto_pauses: int = Field(description="How many times idle detection has stopped it")


class WorkerChanged(EventData):
    """Some of a worker's fields changed: `changes` has their new values, as `GET /api/workers/{id}` shows them
    (the subclasses say which fields each event type may carry)."""

    name: str

    @classmethod
    def of(cls, row: WorkerRow, **changes: Any) -> Self:
        return cls.model_validate({"name": row.name, "changes": changes})


class InstanceChanges(Changes):
    """The instance's own fields, and the worker's settings."""

    aws_instance_id: str | None = None
    instance_type: str = ""
    ami_id: str = ""
    ami_name: str = ""
    public_ip: str | None = None
    private_ip: str | None = None
    launched_at: datetime | None = None
    detailed_monitoring: bool = False
    status_checks: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    details: dict[str, JsonValue] = Field(default_factory=dict)
    idle_detection_enabled: bool = False
    snoozed_until: datetime | None = None


class WorkerUpdated(WorkerChanged):
    """A worker's instance or settings changed."""

    types: ClassVar[tuple[str, ...]] = ("worker.updated",)

    changes: InstanceChanges


class MetricsChanges(Changes):
    """Percentages that moved by METRICS_CHANGE_THRESHOLD or more, or the number of labs."""

    cpu_percent: float | None = None
    memory_percent: float | None = None
    disk_percent: float | None = None
    labs_count: int = 0


class WorkerMetricsUpdated(WorkerChanged):
    """A worker's CPU, memory or disk use moved, or its number of labs changed."""

    types: ClassVar[tuple[str, ...]] = ("worker.metrics.updated",)

    changes: MetricsChanges


class ServiceChanges(Changes):
    service_status: str = ""
    service_reason: str = ""
    license_status: str = ""


class WorkerServiceUpdated(WorkerChanged):
    """What a worker's CML says changed: whether it answers (and why not), or its license status."""

    types: ClassVar[tuple[str, ...]] = ("worker.service.updated",)

    changes: ServiceChanges


class ActivityChanges(Changes):
    last_activity_at: datetime


class WorkerActivityUpdated(WorkerChanged):
    """Idle detection saw newer relevant activity on a worker's CML."""

    types: ClassVar[tuple[str, ...]] = ("worker.activity.updated",)

    changes: ActivityChanges


class WorkersObserved(EventData):
    """Worker rows written without an event of their own: a worker-metrics batch (a new `metrics_at`, values that
    moved less than METRICS_CHANGE_THRESHOLD), a start's resume time, a stop's count. Every API replica reads these
    workers again; nothing a person needs to see changed."""

    types: ClassVar[tuple[str, ...]] = ("workers.observed",)

    worker_ids: list[str]


class ExclusionCreated(ExclusionOut, EventData):
    """An instance removed from the fleet is now excluded from imports."""

    types: ClassVar[tuple[str, ...]] = ("exclusion.created",)


class ExclusionLifted(ExclusionOut, EventData):
    """An instance's exclusion from imports was lifted: imports may bring it back."""

    types: ClassVar[tuple[str, ...]] = ("exclusion.lifted",)

    lifted_by: str
