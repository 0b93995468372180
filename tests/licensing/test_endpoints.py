"""`/api/workers/{id}/license` over HTTP: the token goes to the command's secret, never its payload; requests
the worker's state or the body do not allow are refused and queue nothing; a queued command does what it says."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select

from cml_cloud_manager.cml.simulator import Simulator
from cml_cloud_manager.config import Settings
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import CommandRow, CommandSecretRow
from cml_cloud_manager.workers.domain import WorkerStatus

from ..simulated import add_worker, command_runner, job_context

TOKEN = "MzY1ZjE4-endpoint-test-token"


async def count(db: Database, model: type) -> int:
    async with db.session(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_register_queues_the_token_as_a_secret_and_the_command_registers(
    api: httpx.AsyncClient, db: Database, settings: Settings, sim: Simulator, unlicensed_host: str
) -> None:
    worker = await add_worker(db, unlicensed_host)

    response = await api.post(f"/api/workers/{worker.id}/license", json={"token": f"  {TOKEN}\n"})

    assert response.status_code == 202, response.text
    assert TOKEN not in response.text
    command_id = response.json()["command_id"]
    async with db.session(write=False) as session:
        command = await session.get(CommandRow, command_id)
        secret = await session.get(CommandSecretRow, command_id)
    assert command is not None and secret is not None
    assert (command.type, command.payload) == ("license.register", {"worker_id": worker.id, "reregister": False})
    assert secret.value == TOKEN  # as pasted, less the whitespace around it
    shown = (await api.get(response.headers["location"])).json()
    assert TOKEN not in str(shown)

    async with job_context(db, settings) as ctx:
        assert await command_runner(ctx).run_burst() == 1
    assert sim.host(unlicensed_host).license.kind == "registered"
    assert (await api.get(f"/api/workers/{worker.id}")).json()["license_status"] == "registered"

    response = await api.delete(f"/api/workers/{worker.id}/license")
    assert response.status_code == 202, response.text
    assert (await api.get(response.headers["location"])).json()["type"] == "license.deregister"
    async with job_context(db, settings) as ctx:
        assert await command_runner(ctx).run_burst() == 1
    assert sim.host(unlicensed_host).license.kind == "unregistered"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "token"),
        ({"token": TOKEN, "reregister": "maybe"}, "reregister"),
        ({"token": TOKEN, "smart_account": "SA-1"}, "smart_account"),
    ],
)
async def test_a_body_that_is_not_a_registration_is_422_naming_the_field(
    api: httpx.AsyncClient, db: Database, body: dict[str, object], field: str
) -> None:
    worker = await add_worker(db, "no-host-needed")

    response = await api.post(f"/api/workers/{worker.id}/license", json=body)

    assert response.status_code == 422, response.text
    assert [error["field"] for error in response.json()["errors"]] == [field]
    assert TOKEN not in response.text  # a refused body is not echoed with its token
    assert await count(db, CommandRow) == await count(db, CommandSecretRow) == 0


async def test_a_worker_that_is_not_running_or_not_there_queues_nothing(api: httpx.AsyncClient, db: Database) -> None:
    worker = await add_worker(db, "no-host-needed", status=WorkerStatus.STOPPED)

    for method in ("POST", "DELETE"):
        refused = await api.request(method, f"/api/workers/{worker.id}/license", json={"token": TOKEN})
        assert refused.status_code == 409, refused.text
        assert refused.json()["detail"] == (
            "Cannot change the license of worker 'w1' while it is stopped: it must be running."
        )
        missing = await api.request(method, "/api/workers/nope/license", json={"token": TOKEN})
        assert missing.status_code == 404 and missing.json()["type"].endswith(":worker_not_found")
    assert await count(db, CommandRow) == await count(db, CommandSecretRow) == 0
