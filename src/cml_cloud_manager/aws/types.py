"""What the AWS adapters return: small frozen dataclasses, never boto3 dictionaries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class InstanceState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SHUTTING_DOWN = "shutting-down"
    TERMINATED = "terminated"
    STOPPING = "stopping"
    STOPPED = "stopped"
    # Not an EC2 state: stands in for a value EC2 may add later so a sync never crashes on it.
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, value: str | None) -> InstanceState:
        try:
            return cls(value or "unknown")
        except ValueError:
            return cls.UNKNOWN


class CheckStatus(StrEnum):
    """Result of an EC2 system or instance status check."""

    OK = "ok"
    IMPAIRED = "impaired"
    INITIALIZING = "initializing"
    INSUFFICIENT_DATA = "insufficient-data"
    NOT_APPLICABLE = "not-applicable"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, value: str | None) -> CheckStatus:
        try:
            return cls(value or "unknown")
        except ValueError:
            return cls.UNKNOWN


@dataclass(frozen=True, slots=True)
class SecurityGroupRef:
    id: str
    name: str | None


@dataclass(frozen=True, slots=True)
class Instance:
    id: str
    region: str
    name: str | None
    state: InstanceState
    instance_type: str
    image_id: str
    launch_time: datetime | None
    availability_zone: str | None
    public_ip: str | None
    private_ip: str | None
    public_dns: str | None
    private_dns: str | None
    subnet_id: str | None
    vpc_id: str | None
    key_name: str | None
    monitoring_state: str
    """EC2's detailed-monitoring state: disabled, disabling, enabled or pending."""
    security_groups: tuple[SecurityGroupRef, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict, hash=False)
    state_reason: str | None = None
    """Why EC2 moved the instance to its state, e.g. "Server.InsufficientInstanceCapacity"."""

    @property
    def detailed_monitoring(self) -> bool:
        return self.monitoring_state in ("enabled", "pending")


@dataclass(frozen=True, slots=True)
class Image:
    id: str
    region: str
    name: str | None
    description: str | None
    creation_date: datetime | None
    owner_id: str | None
    state: str
    architecture: str | None
    tags: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class InstanceStatus:
    instance_id: str
    state: InstanceState
    system_status: CheckStatus
    instance_status: CheckStatus
    availability_zone: str | None

    @property
    def ok(self) -> bool:
        return self.system_status is CheckStatus.OK and self.instance_status is CheckStatus.OK

    @property
    def impaired(self) -> bool:
        return CheckStatus.IMPAIRED in (self.system_status, self.instance_status)


@dataclass(frozen=True, slots=True)
class StateChange:
    """The answer to start/stop/terminate: where the instance was and where it is heading."""

    instance_id: str
    previous_state: InstanceState
    current_state: InstanceState


@dataclass(frozen=True, slots=True)
class InstanceMetrics:
    """Latest CloudWatch values for one instance; None where CloudWatch has no data point in the window."""

    instance_id: str
    cpu_percent: float | None
    memory_percent: float | None
    timestamp: datetime | None
    """Time of the newest data point used (UTC), None when there was none."""
