"""What the API says about workers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


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
