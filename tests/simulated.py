"""What the slice tests share: settings that point the app at the CML simulator served over HTTP (and, when given,
the AWS emulator), workers whose CML host is a simulator host, and the context a worker process hands its jobs
and commands."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from cml_cloud_manager.apps import registry
from cml_cloud_manager.cml.simulator import RunningSimulator
from cml_cloud_manager.config import Settings
from cml_cloud_manager.jobs.commands import CommandRunner
from cml_cloud_manager.jobs.context import Context
from cml_cloud_manager.jobs.integrations import build_integrations
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import WorkerRow
from cml_cloud_manager.workers import service as workers
from cml_cloud_manager.workers.domain import ServiceStatus, WorkerStatus

from .cml.conftest import PASSWORD, USERNAME
from .conftest import make_settings


def simulated_settings(database_url: str, served: RunningSimulator, **overrides: object) -> Settings:
    """Settings whose CML hosts are the simulator's: a worker's instance id is its simulator host key."""
    return make_settings(
        database_url,
        cml_url_template=f"{served.root_url}/hosts/{{instance_id}}",
        cml_username=USERNAME,
        cml_password=PASSWORD,
        **overrides,
    )


@asynccontextmanager
async def job_context(db: Database, settings: Settings, process_id: str = "test-worker") -> AsyncIterator[Context]:
    """The context a worker process gives jobs and commands, with its own AWS and CML clients."""
    integrations = build_integrations(settings)
    try:
        yield Context(db=db, settings=settings, integrations=integrations, process_id=process_id)
    finally:
        await integrations.aclose()


def command_runner(ctx: Context) -> CommandRunner:
    """A runner for every command type a worker process runs (drive it with `run_burst`)."""
    return CommandRunner(ctx, registry.commands())


async def add_worker(
    db: Database,
    host: str,
    *,
    name: str = "w1",
    status: str = WorkerStatus.RUNNING,
    service_status: str = ServiceStatus.AVAILABLE,
    **fields: Any,
) -> WorkerRow:
    """A worker on simulator host (or EC2 instance) `host`, running with CML available unless told otherwise."""
    async with db.session() as session:
        row = workers.create_row(
            name=name,
            aws_region="us-east-1",
            aws_instance_id=host,
            status=status,
            service_status=service_status,
            **fields,
        )
        return await workers.add(session, row, reason="test")


def two_routers(title: str) -> str:
    """A CML topology: two routers back to back."""
    return f"""
lab:
  title: {json.dumps(title)}
  description: r1 and r2 back to back
  notes: ''
  version: 0.2.2
nodes:
  - id: n0
    label: r1
    node_definition: iosv
    x: 0
    y: 0
    interfaces:
      - {{id: i0, label: GigabitEthernet0/0, type: physical, slot: 0}}
  - id: n1
    label: r2
    node_definition: iosv
    x: 200
    y: 0
    interfaces:
      - {{id: i0, label: GigabitEthernet0/0, type: physical, slot: 0}}
links:
  - {{id: l0, n1: n0, n2: n1, i1: i0, i2: i0, label: r1-r2}}
"""
