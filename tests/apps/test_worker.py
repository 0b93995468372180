"""The worker process as apps/ composes it: every registered job and command type, the payloads earlier versions
stored still runnable, and an operator's "run now" going from the API through the queue to the scheduler, which
records it as a manual run."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cml_cloud_manager.apps import registry
from cml_cloud_manager.apps.worker import WorkerRuntime
from cml_cloud_manager.config import ProcessRole, Settings
from cml_cloud_manager.jobs.commands import stored_payload
from cml_cloud_manager.jobs.context import Context, Job, Report
from cml_cloud_manager.jobs.integrations import build_integrations
from cml_cloud_manager.jobs.scheduler import Scheduler
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import CommandRow, JobRunRow
from cml_cloud_manager.system import service as system_settings

# Payloads exactly as the version before typed payloads stored them (commands still queued when a deployment is
# upgraded), each with what its model must read from it. A new command type joins this table.
EARLIER: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("worker.start", {"worker_id": "w"}, {"worker_id": "w"}),
    ("worker.stop", {"worker_id": "w"}, {"worker_id": "w"}),
    ("worker.delete", {"worker_id": "w", "terminate": True}, {"worker_id": "w", "terminate": True}),
    (
        "worker.create",
        {"worker_id": "w", "subnet_id": None, "security_group_ids": None, "key_name": None, "tags": {"a": "b"}},
        {"worker_id": "w", "subnet_id": None, "security_group_ids": None, "key_name": None, "tags": {"a": "b"}},
    ),
    (
        "worker.import",
        {"region": "us-east-1", "instance_id": "i-0123456789abcdef0"},
        {"region": "us-east-1", "instance_id": "i-0123456789abcdef0"},
    ),
    (
        "worker.import-by-ami",
        {"region": None, "ami_name_pattern": "cml2*"},
        {"region": None, "ami_name_pattern": "cml2*"},
    ),
    (
        "worker.tags",
        {"worker_id": "w", "set": {"team": "net"}, "remove": ["old"]},
        {"worker_id": "w", "set": {"team": "net"}, "remove": ["old"]},
    ),
    ("worker.monitoring", {"worker_id": "w", "enabled": False}, {"worker_id": "w", "enabled": False}),
    ("worker.monitoring", {"worker_id": "w"}, {"worker_id": "w", "enabled": True}),  # before the flag: on
    ("worker.refresh", {"worker_id": "w"}, {"worker_ids": ["w"]}),  # an operator's refresh
    ("worker.refresh", {"worker_ids": ["w", "v"]}, {"worker_ids": ["w", "v"]}),  # an import's
    ("worker.follow", {"worker_id": "w", "goal": "stopped"}, {"worker_id": "w", "goal": "stopped"}),
    (
        "lab.action",
        {"worker_id": "w", "lab_id": "l", "action": "wipe"},
        {"worker_id": "w", "lab_id": "l", "action": "wipe"},
    ),
    (
        "lab.import",
        {"worker_id": "w", "yaml": "nodes: []", "title": None},
        {"worker_id": "w", "yaml": "nodes: []", "title": None},
    ),
    ("labs.refresh", {"worker_id": "w"}, {"worker_id": "w"}),
    ("license.register", {"worker_id": "w", "reregister": True}, {"worker_id": "w", "reregister": True}),
    ("license.deregister", {"worker_id": "w"}, {"worker_id": "w"}),
    ("system.run-job", {"job": "housekeeping"}, {"job": "housekeeping"}),
]


def test_every_job_and_command_is_registered_once_with_its_settings(settings: Settings) -> None:
    jobs = [job.name for job in registry.jobs()]
    commands = [command.type for command in registry.commands()]
    assert len(set(jobs)) == len(jobs) and len(set(commands)) == len(commands)
    # Each job has an interval and a switch in the settings (a job without them could not be planned).
    assert set(settings.job_intervals()) == set(jobs)
    assert all(isinstance(settings.job_enabled(name), bool) for name in jobs)


@pytest.mark.parametrize(("type", "stored", "read"), EARLIER, ids=[f"{t}-{n}" for n, (t, _, _) in enumerate(EARLIER)])
async def test_payloads_stored_by_the_previous_version_still_run(
    db: Database, settings: Settings, type: str, stored: dict[str, Any], read: dict[str, Any]
) -> None:
    integrations = build_integrations(settings)
    try:
        types = WorkerRuntime(db, settings, integrations, ProcessRole.WORKER).runner.types
    finally:
        await integrations.aclose()
    assert {t for t, _, _ in EARLIER} == set(types), "a command type without its earlier payloads here"
    row = CommandRow(type=type, payload=stored, created_at=datetime.now(UTC))
    payload = stored_payload(types[type], row)
    assert payload.model_dump(mode="json") == read
    # What is stored from now on reads back the same.
    assert stored_payload(types[type], CommandRow(type=type, payload=payload.model_dump(mode="json"))) == payload


async def test_run_now_goes_from_the_api_through_the_queue_to_a_manual_run(
    api: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    integrations = build_integrations(settings)
    worker = WorkerRuntime(db, settings, integrations, ProcessRole.WORKER)
    try:
        assert set(worker.runner.types) == {c.type for c in registry.commands()} | {"system.run-job"}
        accepted = await api.post("/api/system/jobs/housekeeping/run")
        assert accepted.status_code == 202, accepted.text

        assert await worker.runner.run_burst() == 1
    finally:
        await integrations.aclose()

    async with db.session(write=False) as session:
        command = await session.get(CommandRow, accepted.json()["command_id"])
        [run] = (await session.scalars(select(JobRunRow))).all()
    assert command is not None and command.status == "succeeded", command and command.error
    assert (run.job_name, run.trigger, run.outcome, run.claimed_by) == (
        "housekeeping",
        "manual",
        "success",
        worker.process_id,
    )
    assert command.result is not None and run.summary is not None and "events_pruned" in run.summary
    assert (command.result["run_id"], command.result["outcome"]) == (run.id, "success")
    [listed] = (await api.get("/api/system/jobs/housekeeping/runs")).json()["items"]
    assert (listed["id"], listed["trigger"]) == (run.id, "manual")


async def test_a_heartbeat_after_a_release_does_not_renew_the_lease(db: Database, settings: Settings) -> None:
    """SIGTERM releases a running job's claim so another replica reruns it at once; a heartbeat that listed the
    run before the release committed must not extend the lease again (seen once in test_outages on PostgreSQL)."""
    started = asyncio.Event()

    async def slow(ctx: Context) -> Report:
        started.set()
        await asyncio.Event().wait()
        return Report()

    integrations = build_integrations(settings)
    worker = WorkerRuntime(db, settings, integrations, ProcessRole.WORKER)
    worker.scheduler = Scheduler(
        worker.scheduler.ctx, [Job("housekeeping", slow, "test")], overrides=system_settings.get_all
    )
    run = asyncio.create_task(worker.scheduler.run_now("housekeeping"))
    try:
        await started.wait()
        [run_id] = worker.scheduler.running_run_ids()
        await worker._heartbeat()  # a live run's lease is renewed
        async with db.session(write=False) as session:
            renewed = await session.get(JobRunRow, run_id)
            now = await db.now(session)
        assert renewed is not None and renewed.lease_expires_at > now

        await worker.scheduler._release(run_id)
        await worker._heartbeat()  # still lists the run: its task has not ended yet
        async with db.session(write=False) as session:
            released = await session.get(JobRunRow, run_id)
            now = await db.now(session)
        assert released is not None and released.lease_expires_at <= now
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await integrations.aclose()


async def test_a_run_claimed_while_the_worker_stops_ends_before_stop_returns(db: Database, settings: Settings) -> None:
    """The scheduler's claim awaits the database: a stop that came meanwhile once drained before the claim spawned
    its run, which then outlived the worker (and made CML clients after they were closed)."""
    claiming, ran = asyncio.Event(), asyncio.Event()

    async def takes_a_moment(ctx: Context) -> Report:
        ran.set()
        await asyncio.sleep(0.3)  # its work, not a wait for something: the stop must wait for it
        return Report()

    class ClaimsAfterStopBegins(Scheduler):
        async def _claim(self, name: str, tick: datetime, plan: Any, *, trigger: str) -> int | None:
            claiming.set()
            await worker.stop_event.wait()
            return await super()._claim(name, tick, plan, trigger=trigger)

    integrations = build_integrations(settings)
    worker = WorkerRuntime(db, settings, integrations, ProcessRole.WORKER)
    worker.scheduler = ClaimsAfterStopBegins(
        worker.scheduler.ctx, [Job("housekeeping", takes_a_moment, "test")], overrides=system_settings.get_all
    )
    try:
        await worker.start()
        await claiming.wait()
        await worker.stop()
    finally:
        await integrations.aclose()

    assert ran.is_set() and not worker.scheduler.running
    async with db.session(write=False) as session:
        [run] = (await session.scalars(select(JobRunRow))).all()
    assert run.outcome == "success", run.outcome
