"""Applying what AWS and CML report to a worker row, and deciding which changes deserve an event."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ..aws.types import Instance, InstanceMetrics, InstanceStatus
from ..cml.types import Licensing, SystemHealth, SystemInfo, SystemStats
from ..errors import IllegalTransition
from ..jobs.commands import enqueue
from ..storage.models import MetricSampleRow, WorkerRow
from . import service
from .domain import ServiceStatus, WorkerStatus
from .events import WorkerMetricsUpdated, WorkerServiceUpdated, WorkerUpdated
from .schemas import RefreshLabs

TAG_WORKER_ID = "cml-cloud-manager:worker-id"
# CML needs minutes to boot after EC2 says "running"; until then an unreachable host is "starting".
BOOT_GRACE_SECONDS = 900


@dataclass
class CmlObservation:
    """What one round of CML calls found; `error` set when the host could not be read."""

    info: SystemInfo | None = None
    health: SystemHealth | None = None
    stats: SystemStats | None = None
    licensing: Licensing | None = None
    labs_count: int | None = None
    error: str = ""
    auth_failed: bool = False
    # Not asked this time (backing off after failures): keep what we last knew.
    skipped: bool = False


@dataclass
class Observation:
    instance: Instance | None = None
    status: InstanceStatus | None = None
    metrics: InstanceMetrics | None = None
    cml: CmlObservation | None = None
    vanished: bool = False
    ami_name: str = ""


def instance_fields(instance: Instance) -> dict[str, Any]:
    return {
        "instance_type": instance.instance_type,
        "ami_id": instance.image_id,
        "public_ip": instance.public_ip,
        "private_ip": instance.private_ip,
        "launched_at": instance.launch_time,
        "detailed_monitoring": instance.detailed_monitoring,
        "tags": dict(instance.tags),
        "details": {
            "availability_zone": instance.availability_zone,
            "subnet_id": instance.subnet_id,
            "vpc_id": instance.vpc_id,
            "key_name": instance.key_name,
            "public_dns": instance.public_dns,
            "private_dns": instance.private_dns,
            "security_groups": [{"id": g.id, "name": g.name} for g in instance.security_groups],
            "state_reason": instance.state_reason,
        },
    }


def ec2_status(instance: Instance | None, vanished: bool) -> WorkerStatus:
    if vanished or instance is None:
        return WorkerStatus.TERMINATED
    try:
        return WorkerStatus(instance.state.value)
    except ValueError:
        return WorkerStatus.UNKNOWN


def _moved(old: float | None, new: float | None, threshold: float) -> bool:
    if old is None or new is None:
        return old != new
    return abs(old - new) >= threshold


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _percent(used: int, total: int) -> float | None:
    return round(100.0 * used / total, 1) if total else None


async def apply(
    session: AsyncSession, row: WorkerRow, obs: Observation, *, threshold: float, now: datetime
) -> dict[str, Any]:
    """Update `row` from `obs`, append events for what changed meaningfully; returns the changed fields."""
    changed: dict[str, Any] = {}
    if obs.instance is not None:
        for name, value in instance_fields(obs.instance).items():
            if getattr(row, name) != value:
                setattr(row, name, value)
                changed[name] = value
        if not row.name or row.name == row.aws_instance_id:
            row.name = obs.instance.name or row.name
    if obs.ami_name and obs.ami_name != row.ami_name:
        row.ami_name = changed["ami_name"] = obs.ami_name
    if obs.status is not None:
        checks = "ok" if obs.status.ok else ("impaired" if obs.status.impaired else obs.status.system_status.value)
        if checks != row.status_checks:
            row.status_checks = changed["status_checks"] = checks
    new_status = ec2_status(obs.instance, obs.vanished)
    # A terminated worker never comes back, whatever a listing says: keep what we know.
    with contextlib.suppress(IllegalTransition):
        await service.set_status(session, row, new_status, reason="observed in EC2")
    metrics_changed = _apply_metrics(row, obs, threshold)
    service_changed = _apply_cml(row, obs.cml, new_status)
    row.metrics_at = now
    session.add(
        MetricSampleRow(
            worker_id=row.id,
            ts=now,
            cpu_percent=row.cpu_percent,
            memory_percent=row.memory_percent,
            disk_percent=row.disk_percent,
            labs_count=row.labs_count,
        )
    )
    if service_changed:
        await service.touch(session, row, WorkerServiceUpdated.of(row, **service_changed))
        if service_changed.get("service_status") == ServiceStatus.AVAILABLE:
            # Labs appear as soon as CML answers, not at the next labs-refresh tick.
            await enqueue(session, RefreshLabs(worker_id=row.id), worker_id=row.id)
    if metrics_changed:
        await service.touch(session, row, WorkerMetricsUpdated.of(row, **metrics_changed))
    if changed:
        await service.touch(session, row, WorkerUpdated.of(row, **changed))
    return {**changed, **metrics_changed, **service_changed}


def _apply_metrics(row: WorkerRow, obs: Observation, threshold: float) -> dict[str, Any]:
    values: dict[str, float | int | None] = {}
    if obs.metrics is not None:
        values["cpu_percent"] = _round(obs.metrics.cpu_percent)
        values["memory_percent"] = _round(obs.metrics.memory_percent)
    cml = obs.cml
    if cml is not None and cml.stats is not None:
        # CML's own numbers are fresher than CloudWatch's 5-minute averages when both exist.
        values["cpu_percent"] = round(cml.stats.cpu_percent, 1)
        values["memory_percent"] = _percent(cml.stats.memory_used, cml.stats.memory_total)
        values["disk_percent"] = _percent(cml.stats.disk_used, cml.stats.disk_total)
    if cml is not None and cml.labs_count is not None:
        values["labs_count"] = cml.labs_count
    changed: dict[str, Any] = {}
    for name, value in values.items():
        old = getattr(row, name)
        if old == value:
            continue
        setattr(row, name, value)
        if name == "labs_count" or _moved(old, value, threshold):
            changed[name] = value
    return changed


def _apply_cml(row: WorkerRow, cml: CmlObservation | None, status: WorkerStatus) -> dict[str, Any]:
    if cml is not None and cml.skipped:
        return {}
    if cml is None:
        target = (ServiceStatus.UNAVAILABLE, "instance is not running" if status != WorkerStatus.RUNNING else "")
    elif cml.error:
        target = (ServiceStatus.ERROR if cml.auth_failed else ServiceStatus.UNAVAILABLE, cml.error)
        booted = max((t for t in (row.launched_at, row.last_resumed_at) if t is not None), default=None)
        recent = booted is not None and (datetime.now(UTC) - booted).total_seconds() < BOOT_GRACE_SECONDS
        # Only a host that has not come up yet is "starting"; one that was available and stops answering is not.
        if not cml.auth_failed and recent and row.service_status != ServiceStatus.AVAILABLE:
            target = (ServiceStatus.STARTING, cml.error)
    elif cml.info is not None and not cml.info.ready:
        target = (ServiceStatus.STARTING, "CML reports it is not ready yet")
    else:
        target = (ServiceStatus.AVAILABLE, "")
    changed: dict[str, Any] = {}
    if (row.service_status, row.service_reason) != target:
        row.service_status, row.service_reason = target
        changed["service_status"], changed["service_reason"] = target
    # Set with the service status, never apart from it: a host that stopped answering (or whose instance
    # stopped) is not ready any more, whatever it said the last time it answered.
    row.cml_ready = target[0] == ServiceStatus.AVAILABLE
    if cml is not None and cml.info is not None:
        row.cml_version = cml.info.version
    if cml is not None and cml.health is not None:
        row.compute_hosts = len(cml.health.computes)
    if cml is not None and cml.licensing is not None and row.license_status != cml.licensing.status.value:
        row.license_status = changed["license_status"] = cml.licensing.status.value
    return changed
