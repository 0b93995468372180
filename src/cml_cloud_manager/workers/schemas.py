"""What the API says about workers, what it is asked, and the payloads of the worker commands."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, model_validator

from ..jobs.context import CommandPayload, Report
from ..web.paging import Page
from .domain import WorkerStatus


class WorkerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    aws_region: str
    aws_instance_id: str | None
    instance_type: str
    ami_id: str
    ami_name: str
    status: str
    service_status: str
    service_reason: str
    license_status: str
    public_ip: str | None
    private_ip: str | None
    cml_version: str
    cml_ready: bool = Field(
        description="CML answered and says it is ready: true only while service_status is available"
    )
    cpu_percent: float | None
    memory_percent: float | None
    disk_percent: float | None
    labs_count: int
    compute_hosts: int
    status_checks: str
    detailed_monitoring: bool
    tags: dict[str, Any]
    details: dict[str, Any]
    error: str
    idle_detection_enabled: bool
    last_activity_at: datetime | None
    snoozed_until: datetime | None
    last_resumed_at: datetime | None
    auto_pauses: int
    manual_pauses: int
    launched_at: datetime | None
    metrics_at: datetime | None
    created_at: datetime
    updated_at: datetime


class FleetSnapshot(BaseModel):
    """What a new SSE client starts from (its `snapshot` event): the workers it asked for, or all."""

    workers: list[WorkerOut]


class WorkerPage(Page[WorkerOut]):
    """The one list envelope, named for the OpenAPI document."""


class WorkerRemoved(BaseModel):
    deleted: str = Field(description="The worker's id")
    terminated: bool
    excluded: str | None = Field(description="The instance now excluded from imports")


class ExclusionOut(BaseModel):
    """An instance removed from the fleet, which imports leave alone until the exclusion is lifted."""

    model_config = ConfigDict(from_attributes=True)

    aws_instance_id: str
    aws_region: str
    name: str
    excluded_by: str
    created_at: datetime


class FleetSummary(BaseModel):
    total: int
    by_status: dict[str, int]
    running: int
    stopped: int
    failed: int
    avg_cpu_percent: float | None = Field(description="Of running workers with a sample")
    hourly_cost_usd: float = Field(description="Estimated, running workers of a known instance type")
    cost_by_type: dict[str, float]
    unpriced_types: list[str] = Field(description="Running instance types without a known price")


class WorkerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    region: str | None = Field(None, description="Defaults to the first of AWS_REGIONS")
    instance_type: str | None = Field(None, description="Defaults to CML_INSTANCE_TYPE")
    ami_id: str | None = Field(None, pattern=r"^ami-[0-9a-f]{8,17}$", description="Defaults to CML_AMI_ID")
    subnet_id: str | None = Field(None, pattern=r"^subnet-[0-9a-f]{8,17}$")
    security_group_ids: list[str] | None = None
    key_name: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class WorkerImport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    region: str | None = Field(None, description="Defaults to the first of AWS_REGIONS (all, for an AMI pattern)")
    instance_id: str | None = Field(None, pattern=r"^i-[0-9a-f]{8,17}$")
    ami_name_pattern: str | None = Field(None, min_length=1, max_length=128, description="e.g. cml2*")


class TagsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    set: dict[str, str] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)


class MonitoringUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Strict: "false" or 0 must not pass for a yes or no.
    enabled: StrictBool = Field(
        description="true: 1-minute CloudWatch metrics (AWS charges for them); false: back to 5-minute"
    )


class IdleUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = Field(None, description="Per-worker opt-out of idle detection")
    snooze_minutes: float | None = Field(None, ge=0, le=7 * 24 * 60, description="Do not stop before this passes")


class MetricSample(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    ts: datetime
    cpu_percent: float | None
    memory_percent: float | None
    disk_percent: float | None
    labs_count: int


INSTANCE_ID = r"^i-[0-9a-f]{8,17}$"


def _tag_key(key: str) -> str:
    if not key or len(key) > 128 or key.lower().startswith("aws:"):
        raise ValueError(f"tag key {key!r} is not allowed (1-128 characters, not starting with 'aws:')")
    return key


# What EC2 accepts as a tag: checked when the command is queued, not when AWS refuses it minutes later.
TagKey = Annotated[str, AfterValidator(_tag_key)]
TagValue = Annotated[str, Field(max_length=256)]


class WorkerCommand(CommandPayload):
    """A command about one worker."""

    worker_id: str = Field(min_length=1)


class StartWorker(WorkerCommand):
    command: ClassVar[str] = "worker.start"


class StopWorker(WorkerCommand):
    command: ClassVar[str] = "worker.stop"


class DeleteWorker(WorkerCommand):
    command: ClassVar[str] = "worker.delete"

    terminate: bool = False


class CreateWorker(WorkerCommand):
    """The launch options of `POST /api/workers`; the worker record holds the rest (name, region, AMI, type)."""

    command: ClassVar[str] = "worker.create"

    subnet_id: str | None = None
    security_group_ids: list[str] | None = None
    key_name: str | None = None
    tags: dict[TagKey, TagValue] = Field(default_factory=dict)


class ImportInstance(CommandPayload):
    command: ClassVar[str] = "worker.import"

    region: str = Field(min_length=1)
    instance_id: str = Field(pattern=INSTANCE_ID)


class ImportByAmi(CommandPayload):
    command: ClassVar[str] = "worker.import-by-ami"

    region: str | None = Field(None, description="None: every managed region")
    ami_name_pattern: str = Field(min_length=1)


class SetTags(WorkerCommand):
    command: ClassVar[str] = "worker.tags"

    set: dict[TagKey, TagValue] = Field(default_factory=dict)
    remove: list[TagKey] = Field(default_factory=list)


class SetMonitoring(WorkerCommand):
    command: ClassVar[str] = "worker.monitoring"

    enabled: bool = True  # commands queued before it had this flag meant on


class RefreshWorkers(CommandPayload):
    command: ClassVar[str] = "worker.refresh"

    worker_ids: list[str] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _one_worker(cls, data: Any) -> Any:
        # Refreshes queued by an operator before this model named their worker `worker_id`: still runnable.
        if isinstance(data, dict) and "worker_id" in data and "worker_ids" not in data:
            rest = {key: value for key, value in data.items() if key != "worker_id"}
            return {**rest, "worker_ids": [data["worker_id"]]}
        return data


class FollowState(WorkerCommand):
    """Follow a change made outside a command (idle detection's stops) to `goal`."""

    command: ClassVar[str] = "worker.follow"

    goal: WorkerStatus


class RefreshLabs(WorkerCommand):
    """Run by the labs slice; here because workers queue it too (`sync.py`, when CML comes up), and the labs
    slice imports this one, not the other way round."""

    command: ClassVar[str] = "labs.refresh"


# What the worker commands and jobs report (a command's `result`, a run's `summary`).


class Followed(Report):
    """Where following an instance got to."""

    status: str
    settled: bool = Field(description="Reached the goal, or a status it never leaves by itself")
    service_status: str | None = Field(None, exclude_if=lambda v: v is None, description="When the goal is running")


class Created(Followed):
    instance_id: str


class Deleted(Report):
    deleted: str
    terminated: bool


class Imported(Report):
    worker_id: str
    status: str


class TagsSet(Report):
    tags: dict[str, str]


class MonitoringSet(Report):
    monitoring: str = Field(description="EC2's monitoring state of the instance")


class RunSeconds(BaseModel):
    observe: float = Field(description="Asking AWS and CML (concurrently)")
    store: float


class Observed(Report):
    """A worker-metrics run, or a refresh of some workers."""

    workers: int
    changed: int
    cml_unreachable: int
    cml_backing_off: int
    superseded: int = Field(description="Observations dropped: the worker changed during the run")
    failed_regions: dict[str, str]
    seconds: RunSeconds


class ImportRun(Report):
    imported: list[str]
    terminated: list[str] = Field(description="Workers whose instance vanished")
    failed_regions: dict[str, str]
