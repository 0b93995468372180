"""What the API says about workers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
    cml_ready: bool
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


class WorkerPage(BaseModel):
    items: list[WorkerOut]
    total: int
    limit: int
    offset: int


class CommandAccepted(BaseModel):
    command_id: str
    status: str
    worker_alive: bool
    message: str


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
