"""Every job, command type and event type, by name. Each function and model lives beside its domain code."""

from __future__ import annotations

from typing import Any

from ..activity.tasks import idle_detection
from ..auth.sessions import SessionEnded
from ..auth.tokens import TokenRevoked
from ..events.catalogue import catalogue
from ..events.data import EventData
from ..jobs import events as job_events
from ..jobs.context import CommandType, Job
from ..labs import events as lab_events
from ..labs import tasks as labs
from ..labs.schemas import ImportLab, LabAction
from ..licensing import events as license_events
from ..licensing import tasks as licensing
from ..licensing.schemas import DeregisterLicense, RegisterLicense
from ..system.events import SettingsUpdated
from ..system.tasks import housekeeping
from ..workers import events as worker_events
from ..workers import imports
from ..workers import schemas as w
from ..workers import tasks as workers
from ..workers.metrics import collect_metrics


def jobs() -> list[Job]:
    return [
        Job("worker-metrics", collect_metrics, "EC2 state, CloudWatch and CML metrics of every worker"),
        Job("labs-refresh", labs.labs_refresh, "Labs and their details on every available worker"),
        Job("auto-import", imports.auto_import, "Import EC2 instances whose AMI name matches the pattern"),
        Job("idle-detection", idle_detection, "Stop workers with no relevant CML activity past the timeout"),
        Job("housekeeping", housekeeping, "Prune old events, job runs, commands and metric samples"),
    ]


def commands() -> list[CommandType[Any]]:
    """Each command type is named by its payload model (`command`), which the runner validates it with."""
    return [
        CommandType(w.StartWorker, workers.start, "Start a worker's instance"),
        CommandType(w.StopWorker, workers.stop, "Stop a worker's instance"),
        CommandType(w.DeleteWorker, workers.delete, "Stop managing a worker, optionally terminating it"),
        CommandType(w.CreateWorker, workers.create, "Provision a new worker instance"),
        CommandType(w.ImportInstance, workers.import_instance, "Import one EC2 instance"),
        CommandType(w.ImportByAmi, imports.import_by_ami, "Import every instance from matching AMIs"),
        CommandType(w.SetTags, workers.set_tags, "Set or remove instance tags"),
        CommandType(w.SetMonitoring, workers.set_monitoring, "Turn detailed monitoring on or off"),
        CommandType(w.RefreshWorkers, workers.refresh, "Refresh one worker's state and metrics now"),
        CommandType(w.FollowState, workers.follow_state, "Follow a worker's instance to a state"),
        CommandType(LabAction, labs.lab_action, "Start, stop, wipe or delete a lab"),
        CommandType(ImportLab, labs.import_lab, "Import a lab topology"),
        CommandType(w.RefreshLabs, labs.refresh_labs, "Refresh one worker's labs now"),
        CommandType(RegisterLicense, licensing.register, "Register the CML license"),
        CommandType(DeregisterLicense, licensing.deregister, "Deregister the CML license"),
    ]


def events() -> dict[str, type[EventData]]:
    """Every event type the code appends -> the model of its data (`GET /api/events/schemas` publishes them)."""
    return catalogue(
        [
            worker_events.WorkerCreated,
            worker_events.WorkerStatusUpdated,
            worker_events.WorkerUpdated,
            worker_events.WorkerMetricsUpdated,
            worker_events.WorkerServiceUpdated,
            worker_events.WorkerActivityUpdated,
            worker_events.WorkerIdlePaused,
            worker_events.WorkerDeleted,
            worker_events.WorkersObserved,
            worker_events.ExclusionCreated,
            worker_events.ExclusionLifted,
            lab_events.LabChanged,
            lab_events.LabStateChanged,
            lab_events.LabDeleted,
            license_events.LicenseStarted,
            license_events.LicenseFailed,
            license_events.LicenseCompleted,
            job_events.CommandQueued,
            job_events.CommandStarted,
            job_events.CommandProgress,
            job_events.CommandFinished,
            job_events.JobRunStarted,
            job_events.JobRunCompleted,
            SettingsUpdated,
            SessionEnded,
            TokenRevoked,
        ]
    )
