"""What one observation does to a worker row: the CML fields always tell one story."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from cml_cloud_manager.aws.types import Instance, InstanceState, SecurityGroupRef
from cml_cloud_manager.cml.types import SystemInfo
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import EventRow, WorkerRow
from cml_cloud_manager.workers import service
from cml_cloud_manager.workers.sync import CmlObservation, Observation, apply

# Launched long ago: past the boot grace period, an unreachable host is "unavailable", not "starting".
LAUNCHED = datetime.now(UTC) - timedelta(days=1)


def instance(state: InstanceState) -> Instance:
    return Instance(
        id="i-0123456789abcdef0",
        region="us-east-1",
        name="w1",
        state=state,
        instance_type="c5.2xlarge",
        image_id="ami-1",
        launch_time=LAUNCHED,
        availability_zone="us-east-1a",
        public_ip="203.0.113.5",
        private_ip="10.0.0.5",
        public_dns=None,
        private_dns=None,
        subnet_id="subnet-1",
        vpc_id="vpc-1",
        key_name=None,
        monitoring_state="disabled",
    )


def answered(*, ready: bool) -> CmlObservation:
    return CmlObservation(info=SystemInfo(version="2.9.0", ready=ready, allow_ssh_pubkey_auth=False, oui=None))


async def observe(db: Database, worker_id: str, obs: Observation) -> tuple[str, bool]:
    async with db.session() as session:
        row = (await session.scalars(select(WorkerRow).where(WorkerRow.id == worker_id))).one()
        await apply(session, row, obs, threshold=1.0, now=datetime.now(UTC))
        return row.service_status, row.cml_ready


@pytest.fixture
async def worker_id(db: Database) -> str:
    async with db.session() as session:
        row = service.create_row(
            name="w1", aws_region="us-east-1", aws_instance_id="i-0123456789abcdef0", status="running"
        )
        session.add(row)
        await session.flush()
        return row.id


@pytest.mark.parametrize(
    ("later", "expected"),
    [
        (Observation(instance=instance(InstanceState.RUNNING), cml=CmlObservation(error="timed out")), "unavailable"),
        (
            Observation(
                instance=instance(InstanceState.RUNNING), cml=CmlObservation(error="refused", auth_failed=True)
            ),
            "error",
        ),
        (Observation(instance=instance(InstanceState.RUNNING), cml=answered(ready=False)), "starting"),
        (Observation(instance=instance(InstanceState.STOPPED)), "unavailable"),
    ],
    ids=["stops-answering", "refuses-credentials", "says-not-ready", "instance-stopped"],
)
async def test_cml_is_ready_only_while_its_service_is_available(
    db: Database, worker_id: str, later: Observation, expected: str
) -> None:
    ready = Observation(instance=instance(InstanceState.RUNNING), cml=answered(ready=True))
    assert await observe(db, worker_id, ready) == ("available", True)
    assert await observe(db, worker_id, later) == (expected, False)
    # And back: the next answer of a ready CML makes it ready again.
    assert await observe(db, worker_id, ready) == ("available", True)


async def test_a_host_not_asked_this_time_keeps_what_was_known(db: Database, worker_id: str) -> None:
    ready = Observation(instance=instance(InstanceState.RUNNING), cml=answered(ready=True))
    assert await observe(db, worker_id, ready) == ("available", True)
    backing_off = Observation(instance=instance(InstanceState.RUNNING), cml=CmlObservation(skipped=True))
    assert await observe(db, worker_id, backing_off) == ("available", True)


async def test_what_changed_is_announced_as_json_with_real_types(db: Database, worker_id: str) -> None:
    """Not Python's text for a dict or a datetime: the values as `GET /api/workers/{id}` shows them."""
    tagged = replace(
        instance(InstanceState.RUNNING),
        tags={"team": "net"},
        security_groups=(SecurityGroupRef(id="sg-1", name="cml"),),
        monitoring_state="enabled",
    )
    await observe(db, worker_id, Observation(instance=tagged, cml=answered(ready=True)))
    async with db.session(write=False) as session:
        [event] = (await session.scalars(select(EventRow).where(EventRow.type == "worker.updated"))).all()
    changes = event.data["changes"]
    assert changes["tags"] == {"team": "net"}
    assert changes["details"]["security_groups"] == [{"id": "sg-1", "name": "cml"}]
    assert changes["detailed_monitoring"] is True
    assert datetime.fromisoformat(changes["launched_at"]) == LAUNCHED
    assert changes["public_ip"] == "203.0.113.5"
    assert "cpu_percent" not in changes and "name" not in changes  # only what changed, and only instance fields
