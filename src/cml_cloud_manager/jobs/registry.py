"""Every job and command type, by name. Each function lives beside its domain code."""

from __future__ import annotations

from ..activity.tasks import idle_detection
from ..labs import tasks as labs
from ..licensing import tasks as licensing
from ..system.tasks import housekeeping
from ..workers import imports
from ..workers import tasks as workers
from ..workers.metrics import collect_metrics
from .context import CommandType, Job


def jobs() -> list[Job]:
    return [
        Job("worker-metrics", collect_metrics, "EC2 state, CloudWatch and CML metrics of every worker"),
        Job("labs-refresh", labs.labs_refresh, "Labs and their details on every available worker"),
        Job("auto-import", imports.auto_import, "Import EC2 instances whose AMI name matches the pattern"),
        Job("idle-detection", idle_detection, "Stop workers with no relevant CML activity past the timeout"),
        Job("housekeeping", housekeeping, "Prune old events, job runs, commands and metric samples"),
    ]


def commands() -> list[CommandType]:
    return [
        CommandType("worker.start", workers.start, "Start a worker's instance"),
        CommandType("worker.stop", workers.stop, "Stop a worker's instance"),
        CommandType("worker.delete", workers.delete, "Stop managing a worker, optionally terminating it"),
        CommandType("worker.create", workers.create, "Provision a new worker instance"),
        CommandType("worker.import", workers.import_instance, "Import one EC2 instance"),
        CommandType("worker.import-by-ami", imports.import_by_ami, "Import every instance from matching AMIs"),
        CommandType("worker.tags", workers.set_tags, "Set or remove instance tags"),
        CommandType("worker.monitoring", workers.enable_monitoring, "Enable detailed monitoring"),
        CommandType("worker.refresh", workers.refresh, "Refresh one worker's state and metrics now"),
        CommandType("lab.action", labs.lab_action, "Start, stop, wipe or delete a lab"),
        CommandType("lab.import", labs.import_lab, "Import a lab topology"),
        CommandType("labs.refresh", labs.refresh_labs, "Refresh one worker's labs now"),
        CommandType("license.register", licensing.register, "Register the CML license"),
        CommandType("license.deregister", licensing.deregister, "Deregister the CML license"),
    ]
