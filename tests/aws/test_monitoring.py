"""Detailed monitoring from the API to EC2: the API queues the command, a command runner switches monitoring in
the AWS emulator, and DescribeInstances and the worker record agree, both ways."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from sqlalchemy import func, select

from cml_cloud_manager.aws import ec2
from cml_cloud_manager.aws.session import AwsClients
from cml_cloud_manager.config import Settings
from cml_cloud_manager.jobs.commands import CommandRunner
from cml_cloud_manager.jobs.context import CommandType, Context
from cml_cloud_manager.jobs.integrations import build_integrations
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import CommandRow
from cml_cloud_manager.workers import service, tasks
from cml_cloud_manager.workers.domain import WorkerStatus
from cml_cloud_manager.workers.schemas import SetMonitoring

from ..conftest import make_settings, serve_api

REGION = "us-east-1"


@pytest.fixture
async def settings(database_url: str, moto: str) -> Settings:
    return make_settings(database_url, aws_endpoint_url=moto, aws_regions=REGION)


@pytest.fixture
async def runner(db: Database, settings: Settings) -> AsyncIterator[CommandRunner]:
    """A command runner for monitoring commands, as a worker process runs it (driven here in burst mode)."""
    integrations = build_integrations(settings)
    ctx = Context(db=db, settings=settings, integrations=integrations, process_id="test-worker")
    yield CommandRunner(ctx, [CommandType(SetMonitoring, tasks.set_monitoring, "")])
    await integrations.aclose()


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_api(settings) as client:
        yield client


async def test_monitoring_is_switched_on_and_off(
    api: httpx.AsyncClient,
    runner: CommandRunner,
    db: Database,
    clients: AwsClients,
    register_ami: Callable[..., Awaitable[str]],
    launch: Callable[..., Awaitable[list[str]]],
) -> None:
    ami = await register_ami()
    [instance_id] = await launch(ami)
    async with db.session() as session:
        row = service.create_row(
            name="w-monitored",
            aws_region=REGION,
            instance_type="t3.micro",
            ami_id=ami,
            aws_instance_id=instance_id,
            status=WorkerStatus.RUNNING,
        )
        worker = await service.add(session, row, reason="test")

    for enabled, answered, state in ((True, "pending", "enabled"), (False, "disabling", "disabled")):
        accepted = await api.post(f"/api/workers/{worker.id}/monitoring", json={"enabled": enabled})
        assert accepted.status_code == 202, accepted.text
        assert await runner.run_burst() == 1
        async with db.session(write=False) as session:
            command = await session.get(CommandRow, accepted.json()["command_id"])
        assert command is not None
        assert (command.status, command.error, command.result) == ("succeeded", "", {"monitoring": answered})

        [described] = await ec2.describe_instances(clients, REGION, instance_ids=[instance_id])
        assert described.monitoring_state == state
        assert (await api.get(f"/api/workers/{worker.id}")).json()["detailed_monitoring"] is enabled


@pytest.mark.parametrize("body", [{}, {"enabled": "false"}, {"enabled": 0}, {"enabled": False, "colour": "red"}])
async def test_monitoring_needs_a_plain_yes_or_no(api: httpx.AsyncClient, db: Database, body: object) -> None:
    async with db.session() as session:
        row = service.create_row(
            name="w-asked",
            aws_region=REGION,
            instance_type="t3.micro",
            ami_id="ami-12345678",
            aws_instance_id="i-0123456789abcdef0",
            status=WorkerStatus.RUNNING,
        )
        worker = await service.add(session, row, reason="test")

    refused = await api.post(f"/api/workers/{worker.id}/monitoring", json=body)

    assert refused.status_code == 422, refused.text
    assert "enabled" in refused.text or "colour" in refused.text
    async with db.session(write=False) as session:
        assert await session.scalar(select(func.count()).select_from(CommandRow)) == 0
