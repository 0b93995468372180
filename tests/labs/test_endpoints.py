"""`/api/workers/{id}/labs` over HTTP: the list, operations checked before they are queued (and then run by a
command runner in burst mode), the download straight from CML, and uploads refused with a reason."""

from __future__ import annotations

import httpx
import yaml
from sqlalchemy import func, select

from cml_cloud_manager.cml import CMLClient, LabState
from cml_cloud_manager.config import Settings
from cml_cloud_manager.labs.endpoints import MAX_TOPOLOGY_BYTES
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import CommandRow
from cml_cloud_manager.workers.domain import WorkerStatus

from ..simulated import add_worker, command_runner, job_context, two_routers


async def commands(db: Database) -> int:
    async with db.session(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(CommandRow)) or 0)


async def run_queue(db: Database, settings: Settings) -> int:
    async with job_context(db, settings) as ctx:
        return await command_runner(ctx).run_burst()


async def accepted(response: httpx.Response, api: httpx.AsyncClient) -> dict[str, object]:
    """The command a 202 answer points at."""
    assert response.status_code == 202, response.text
    command: dict[str, object] = (await api.get(response.headers["location"])).json()
    return command


async def test_labs_are_listed_after_a_refresh_and_operated_through_commands(
    api: httpx.AsyncClient, db: Database, settings: Settings, empty_host: str, host_cml: CMLClient
) -> None:
    b = (await host_cml.import_lab(two_routers("B lab"))).id
    await host_cml.import_lab(two_routers("A lab"))
    worker = await add_worker(db, empty_host)
    labs_url = f"/api/workers/{worker.id}/labs"
    assert (await api.get(labs_url)).json() == {"items": [], "total": 0, "limit": 100, "offset": 0}

    command = await accepted(await api.post(f"{labs_url}/refresh"), api)
    assert (command["type"], command["worker_id"]) == ("labs.refresh", worker.id)
    assert await run_queue(db, settings) == 1
    page = (await api.get(labs_url)).json()
    assert [lab["title"] for lab in page["items"]] == ["A lab", "B lab"] and page["total"] == 2
    second = page["items"][1]
    assert (second["cml_lab_id"], second["state"], second["node_count"]) == (b, "DEFINED_ON_CORE", 2)

    # By our id or CML's: both name the lab.
    command = await accepted(await api.post(f"{labs_url}/{b}/start"), api)
    assert (command["type"], command["status"]) == ("lab.action", "queued")
    assert await run_queue(db, settings) == 1
    assert await host_cml.lab_state(b) == LabState.STARTED
    assert [lab["state"] for lab in (await api.get(labs_url)).json()["items"]] == ["DEFINED_ON_CORE", "STARTED"]
    await accepted(await api.post(f"{labs_url}/{second['id']}/stop"), api)
    assert await run_queue(db, settings) == 1
    assert await host_cml.lab_state(b) == LabState.STOPPED


async def test_an_action_the_lab_state_forbids_is_409_and_queues_nothing(
    api: httpx.AsyncClient, db: Database, settings: Settings, empty_host: str, host_cml: CMLClient
) -> None:
    lab = (await host_cml.import_lab(two_routers("Fresh"))).id
    worker = await add_worker(db, empty_host)
    await accepted(await api.post(f"/api/workers/{worker.id}/labs/refresh"), api)
    await run_queue(db, settings)
    queued = await commands(db)

    for action, method in (("stop", "POST"), ("wipe", "POST")):
        refused = await api.request(method, f"/api/workers/{worker.id}/labs/{lab}/{action}")
        assert refused.status_code == 409, refused.text
        assert refused.json()["detail"].startswith(f"Cannot {action} lab 'Fresh' while it is defined on core")
    missing = await api.post(f"/api/workers/{worker.id}/labs/no-such-lab/start")
    assert missing.status_code == 404 and missing.json()["type"].endswith(":lab_not_found")
    assert await commands(db) == queued


async def test_a_stopped_lab_must_be_wiped_before_it_is_deleted(
    api: httpx.AsyncClient, db: Database, settings: Settings, empty_host: str, host_cml: CMLClient
) -> None:
    lab = (await host_cml.import_lab(two_routers("Stopped"))).id
    await host_cml.start_lab(lab)
    await host_cml.stop_lab(lab)
    worker = await add_worker(db, empty_host)
    await accepted(await api.post(f"/api/workers/{worker.id}/labs/refresh"), api)
    await run_queue(db, settings)
    queued = await commands(db)

    refused = await api.delete(f"/api/workers/{worker.id}/labs/{lab}")

    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"] == (
        "Cannot delete lab 'Stopped' while it is stopped: it must be defined on core. Stop and wipe it first."
    )
    assert await commands(db) == queued


async def test_nothing_is_queued_for_a_worker_that_is_not_running(
    api: httpx.AsyncClient, db: Database, empty_host: str
) -> None:
    worker = await add_worker(db, empty_host, status=WorkerStatus.STOPPED)
    for path in ("refresh", "any-lab/start", "import"):
        refused = await api.post(f"/api/workers/{worker.id}/labs/{path}", content=two_routers("x").encode())
        assert refused.status_code == 409, (path, refused.text)
        assert refused.json()["detail"] == "Cannot operate labs on worker 'w1' while it is stopped: it must be running."
    assert (await api.get("/api/workers/nope/labs")).status_code == 404
    assert await commands(db) == 0


async def test_a_lab_downloads_as_yaml_named_for_its_title(
    api: httpx.AsyncClient, db: Database, settings: Settings, empty_host: str, host_cml: CMLClient
) -> None:
    lab = (await host_cml.import_lab(two_routers("OSPF: area 0/1"))).id
    worker = await add_worker(db, empty_host)
    await accepted(await api.post(f"/api/workers/{worker.id}/labs/refresh"), api)
    await run_queue(db, settings)

    response = await api.get(f"/api/workers/{worker.id}/labs/{lab}/download")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-yaml")
    assert response.headers["content-disposition"] == 'attachment; filename="OSPF__area_0_1.yaml"'
    topology = yaml.safe_load(response.text)
    assert topology["lab"]["title"] == "OSPF: area 0/1"
    assert [node["label"] for node in topology["nodes"]] == ["r1", "r2"]


async def test_an_upload_is_imported_by_a_command(
    api: httpx.AsyncClient, db: Database, settings: Settings, empty_host: str, host_cml: CMLClient
) -> None:
    worker = await add_worker(db, empty_host)
    response = await api.post(
        f"/api/workers/{worker.id}/labs/import",
        params={"title": "Uploaded"},
        content=two_routers("In the file").encode(),
        headers={"content-type": "application/x-yaml"},
    )
    command = await accepted(response, api)
    assert command["type"] == "lab.import"
    assert await run_queue(db, settings) == 1

    [lab] = (await api.get(f"/api/workers/{worker.id}/labs")).json()["items"]
    assert (lab["title"], lab["node_count"], lab["link_count"]) == ("Uploaded", 2, 1)
    assert await host_cml.list_labs() == [lab["cml_lab_id"]]


async def test_an_upload_must_be_a_topology_of_bounded_size(api: httpx.AsyncClient, db: Database) -> None:
    worker = await add_worker(db, "no-host-needed")
    url = f"/api/workers/{worker.id}/labs/import"
    response = await api.post(url, content=b"key: [unclosed")
    assert response.status_code == 400 and "not a YAML topology" in response.json()["detail"]
    response = await api.post(url, content=b"just: a mapping")
    assert response.status_code == 400 and "nodes" in response.json()["detail"]
    response = await api.post(url, content=b"\xff\xfe not text")
    assert response.status_code == 400 and "not a YAML topology" in response.json()["detail"]
    response = await api.post(url, content=b"#" * (MAX_TOPOLOGY_BYTES + 1))
    # Refused by the body limit in front of every endpoint (MAX_REQUEST_BYTES) or by the import's own.
    assert response.status_code == 413 and f"{MAX_TOPOLOGY_BYTES} bytes" in response.json()["detail"]
    assert await commands(db) == 0
