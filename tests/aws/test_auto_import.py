"""Auto-import against a real moto server: what it takes in and what it leaves to others."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from cml_cloud_manager.aws.session import AwsClients
from cml_cloud_manager.config import Settings
from cml_cloud_manager.jobs.context import Context
from cml_cloud_manager.jobs.integrations import CMLPool, Integrations
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.workers import service
from cml_cloud_manager.workers.domain import WorkerStatus
from cml_cloud_manager.workers.imports import import_matching
from cml_cloud_manager.workers.sync import TAG_WORKER_ID

REGION = "us-east-1"


async def test_an_instance_being_created_is_left_to_its_create_command(
    db: Database,
    settings: Settings,
    clients: AwsClients,
    register_ami: Callable[..., Awaitable[str]],
    launch: Callable[..., Awaitable[list[str]]],
) -> None:
    """A create command launches the instance, then adopts it into the worker the API made: an auto-import
    run in between must not import it as a second worker (the adoption would then fail)."""
    ami = await register_ami()
    async with db.session() as session:
        creating = await service.add(
            session,
            service.create_row(
                name="fresh", aws_region=REGION, instance_type="c5.2xlarge", ami_id=ami, status=WorkerStatus.PENDING
            ),
            reason="created by an operator",
        )
    tag = {"ResourceType": "instance", "Tags": [{"Key": TAG_WORKER_ID, "Value": creating.id}]}
    (launched,) = await launch(ami, TagSpecifications=[tag])
    (other,) = await launch(ami)
    ctx = Context(db=db, settings=settings, integrations=Integrations(clients, CMLPool(settings)), process_id="test")

    result = await import_matching(ctx, [REGION], "cml2-*", reason="auto-import")

    async with db.session(write=False) as session:
        assert await service.by_instance(session, launched) is None
        imported = await service.by_instance(session, other)
    assert imported is not None and result.imported == [imported.id]
