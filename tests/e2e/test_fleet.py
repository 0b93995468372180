"""The fleet end to end: api + worker processes against the AWS emulator and the CML simulator."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import update

from cml_cloud_manager.cml.client import CMLClient
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import WorkerRow

from ..sse import Event, Stream, open_stream
from .conftest import Sandbox

pytestmark = pytest.mark.e2e


def command_done(command_id: str) -> Any:
    def match(e: Event) -> bool:
        return e.type in ("command.completed", "command.failed") and e.data["data"]["command_id"] == command_id

    return match


async def run_command(api: httpx.AsyncClient, stream: Stream, method: str, path: str, **kwargs: Any) -> Event:
    response = await api.request(method, path, **kwargs)
    assert response.status_code == 202, response.text
    return (await stream.until(command_done(response.json()["command_id"]), timeout=30))[-1]


async def fleet_ready(api: httpx.AsyncClient, stream: Stream, count: int) -> dict[str, dict[str, Any]]:
    """Wait (on events) until auto-import brought in `count` workers and every running one has CML available."""
    while True:
        workers = (await api.get("/api/workers")).json()["items"]
        running = [w for w in workers if w["status"] == "running"]
        if len(workers) == count and running and all(w["service_status"] == "available" for w in running):
            labs_known = [(await api.get(f"/api/workers/{w['id']}/labs")).json()["items"] for w in running]
            if all(labs_known):
                return {w["aws_instance_id"]: w for w in workers}
        await stream.until(lambda e: e.type.startswith(("worker.", "lab.")), timeout=30)


@pytest.fixture(params=["split", "all"])
async def fleet(request: pytest.FixtureRequest, sandbox: Sandbox, start: Any) -> Any:
    """The same suite against split processes and against combined mode (the rollback path)."""
    if request.param == "all":
        api = await start("all")
    else:
        api = await start("api")
        await start("worker")
    async with httpx.AsyncClient(base_url=api.url, timeout=15) as client, open_stream(api.url) as stream:
        await stream.next()
        workers = await fleet_ready(client, stream, len(sandbox.instance_ids))
        yield client, stream, workers


async def test_auto_import_brings_in_the_fleet_with_metrics_and_labs(fleet: Any, sandbox: Sandbox) -> None:
    api, _, workers = fleet
    assert set(workers) == set(sandbox.instance_ids)
    stopped = [w for w in workers.values() if w["status"] == "stopped"]
    assert [w["name"] for w in stopped] == ["cml-training-2"]
    running = [w for w in workers.values() if w["status"] == "running"]
    for worker in running:
        assert worker["ami_name"] == "cml2-2.9.0-sandbox"
        assert worker["cml_version"].startswith("2.")
        assert worker["cpu_percent"] is not None
        host = sandbox.sim("GET", f"/hosts/{worker['aws_instance_id']}")
        labs = (await api.get(f"/api/workers/{worker['id']}/labs")).json()["items"]
        assert {lab["cml_lab_id"] for lab in labs} == {lab["id"] for lab in host["labs"]}
    history = (await api.get(f"/api/workers/{running[0]['id']}/metrics")).json()["items"]
    assert history and history[-1]["cpu_percent"] is not None


async def test_stop_and_start_change_the_instance_in_ec2(fleet: Any, sandbox: Sandbox) -> None:
    api, stream, workers = fleet
    worker = next(w for w in workers.values() if w["status"] == "running")
    done = await run_command(api, stream, "POST", f"/api/workers/{worker['id']}/stop")
    assert done.type == "command.completed", done.data["data"]
    assert sandbox.state(worker["aws_instance_id"]) in ("stopping", "stopped")
    # The command followed the instance until it stopped: no waiting for the next worker-metrics run.
    state = (await api.get(f"/api/workers/{worker['id']}")).json()
    assert (state["status"], state["manual_pauses"]) == ("stopped", 1)
    done = await run_command(api, stream, "POST", f"/api/workers/{worker['id']}/start")
    assert done.type == "command.completed", done.data["data"]
    assert sandbox.state(worker["aws_instance_id"]) in ("pending", "running")
    assert (await api.get(f"/api/workers/{worker['id']}")).json()["status"] == "running"


async def test_lab_operations_reach_the_cml_host(fleet: Any, sandbox: Sandbox) -> None:
    api, stream, workers = fleet
    worker = next(w for w in workers.values() if w["status"] == "running")
    lab = (await api.get(f"/api/workers/{worker['id']}/labs")).json()["items"][0]
    if lab["state"] == "STARTED":
        done = await run_command(api, stream, "POST", f"/api/workers/{worker['id']}/labs/{lab['id']}/stop")
        assert done.type == "command.completed", done.data["data"]
    done = await run_command(api, stream, "POST", f"/api/workers/{worker['id']}/labs/{lab['id']}/start")
    assert done.type == "command.completed", done.data["data"]
    host = sandbox.sim("GET", f"/hosts/{worker['aws_instance_id']}")
    assert next(item for item in host["labs"] if item["id"] == lab["cml_lab_id"])["state"] == "STARTED"
    refused = await api.post(f"/api/workers/{worker['id']}/labs/{lab['id']}/wipe")
    assert refused.status_code == 409 and "while it is started" in refused.json()["detail"]

    download = await api.get(f"/api/workers/{worker['id']}/labs/{lab['id']}/download")
    assert download.status_code == 200 and "nodes:" in download.text
    done = await run_command(
        api,
        stream,
        "POST",
        f"/api/workers/{worker['id']}/labs/import",
        params={"title": "copy of the lab"},
        content=download.text.encode(),
        headers={"content-type": "application/x-yaml"},
    )
    assert done.type == "command.completed", done.data["data"]
    new_id = done.data["data"]["result"]["cml_lab_id"]
    host = sandbox.sim("GET", f"/hosts/{worker['aws_instance_id']}")
    assert any(item["id"] == new_id and item["title"] == "copy of the lab" for item in host["labs"])


async def test_license_registration_never_echoes_the_token(fleet: Any, sandbox: Sandbox) -> None:
    api, stream, workers = fleet
    worker = next(w for w in workers.values() if w["status"] == "running")
    if worker["license_status"] == "registered":
        done = await run_command(api, stream, "DELETE", f"/api/workers/{worker['id']}/license")
        assert done.type == "command.completed", done.data["data"]
    token = "sandbox-token-0123456789"
    response = await api.post(f"/api/workers/{worker['id']}/license", json={"token": token})
    assert response.status_code == 202 and token not in response.text
    seen = await stream.until(command_done(response.json()["command_id"]), timeout=30)
    assert seen[-1].type == "command.completed", seen[-1].data["data"]
    types = [e.type for e in seen]
    assert "license.registration.started" in types and "license.registration.completed" in types
    assert all(token not in str(e.data) for e in seen)
    command = (await api.get(f"/api/commands/{response.json()['command_id']}")).text
    assert token not in command
    assert (await api.get(f"/api/workers/{worker['id']}")).json()["license_status"] == "registered"


async def test_rejected_credentials_and_slow_hosts_are_marked_others_still_update(fleet: Any, sandbox: Sandbox) -> None:
    api, stream, workers = fleet
    running = [w for w in workers.values() if w["status"] == "running"]
    locked, slow = running[0], running[1]
    sandbox.sim("PATCH", f"/hosts/{locked['aws_instance_id']}/config", {"reject_credentials": True})
    sandbox.sim("PATCH", f"/hosts/{slow['aws_instance_id']}/config", {"slow_seconds": 5})

    expected = {locked["id"]: "error", slow["id"]: "unavailable"}
    seen: dict[str, str] = {}

    def both_marked(e: Event) -> bool:
        if e.type == "worker.service.updated" and e.subject is not None and e.subject in expected:
            seen[e.subject] = e.data["data"]["changes"].get("service_status", seen.get(e.subject))
        return seen == expected

    await stream.until(both_marked, timeout=30)
    state = (await api.get(f"/api/workers/{locked['id']}")).json()
    assert state["service_status"] == "error" and "credential" in state["service_reason"].lower()
    state = (await api.get(f"/api/workers/{slow['id']}")).json()
    assert state["service_status"] == "unavailable"
    runs = (await api.get("/api/system/jobs/worker-metrics/runs", params={"limit": 3})).json()["items"]
    assert runs[0]["outcome"] in ("success", "running")
    healthy = (await api.get(f"/api/workers/{running[2]['id']}")).json()
    assert healthy["service_status"] == "available"
    # Broken hosts are not asked again at every run: they back off, the others keep being read.
    run = await stream.wait_for(
        lambda e: (
            e.type == "job.run.completed"
            and e.data["data"]["job"] == "worker-metrics"
            and (e.data["data"]["summary"] or {}).get("cml_backing_off") == 2
        )
    )
    assert run.data["data"]["outcome"] == "success" and run.data["data"]["summary"]["cml_unreachable"] == 0


async def test_instance_vanished_mid_operation_fails_clearly_then_is_marked(
    fleet: Any, sandbox: Sandbox, db_of: Database
) -> None:
    """EC2 forgets terminated instances after a while: the worker's instance id then matches nothing."""
    api, stream, workers = fleet
    worker = next(w for w in workers.values() if w["status"] == "running")
    async with db_of.session() as session:
        await session.execute(
            update(WorkerRow).where(WorkerRow.id == worker["id"]).values(aws_instance_id="i-0000000000000dead")
        )
    done = await run_command(api, stream, "POST", f"/api/workers/{worker['id']}/stop")
    assert done.type == "command.failed"
    # Either EC2 says the instance is unknown, or a metrics run noticed first and the worker is already terminated.
    error = done.data["data"]["error"]
    assert "i-0000000000000dead" in error or "while it is terminated" in error, error
    # wait_for: when a metrics run got there first, the status event came before the command's failure.
    await stream.wait_for(
        lambda e: (
            e.type == "worker.status.updated" and e.subject == worker["id"] and e.data["data"]["status"] == "terminated"
        ),
        timeout=30,
    )
    refused = await api.post(f"/api/workers/{worker['id']}/start")
    assert refused.status_code == 409 and "terminated" in refused.json()["detail"]


async def test_provisioning_failure_marks_failed_and_leaves_no_instance(fleet: Any, sandbox: Sandbox) -> None:
    api, stream, _ = fleet
    before = sum(len(r["Instances"]) for r in sandbox.ec2().describe_instances()["Reservations"])
    response = await api.post("/api/workers", json={"name": "doomed", "ami_id": "ami-0123456789abcdef0"})
    assert response.status_code == 202
    seen = await stream.until(command_done(response.json()["command_id"]), timeout=30)
    assert seen[-1].type == "command.failed"
    assert "ami-0123456789abcdef0" in seen[-1].data["data"]["error"]
    doomed = next(w for w in (await api.get("/api/workers")).json()["items"] if w["name"] == "doomed")
    assert doomed["status"] == "failed" and doomed["error"]
    after = sum(len(r["Instances"]) for r in sandbox.ec2().describe_instances()["Reservations"])
    assert after == before


async def test_create_provisions_a_tagged_instance(fleet: Any, sandbox: Sandbox) -> None:
    api, stream, _ = fleet
    ami = sandbox.ec2().describe_images(Owners=["self"])["Images"][0]["ImageId"]
    response = await api.post("/api/workers", json={"name": "fresh", "ami_id": ami, "tags": {"team": "qa"}})
    seen = await stream.until(command_done(response.json()["command_id"]), timeout=30)
    assert seen[-1].type == "command.completed", seen[-1].data["data"]
    instance_id = seen[-1].data["data"]["result"]["instance_id"]
    tags = {
        t["Key"]: t["Value"]
        for t in sandbox.ec2().describe_tags(Filters=[{"Name": "resource-id", "Values": [instance_id]}])["Tags"]
    }
    assert tags["Name"] == "fresh" and tags["team"] == "qa" and "cml-cloud-manager:worker-id" in tags


async def test_idle_detection_stops_idle_workers_except_opted_out(fleet: Any, sandbox: Sandbox) -> None:
    api, stream, workers = fleet
    running = [w for w in workers.values() if w["status"] == "running"]
    keep = running[0]
    response = await api.put(f"/api/workers/{keep['id']}/idle", json={"enabled": False})
    assert response.status_code == 200 and response.json()["idle_detection_enabled"] is False
    settings = {"jobs.idle-detection.enabled": True, "jobs.idle-detection.interval_seconds": 2}
    assert (await api.put("/api/system/settings", json={"values": settings})).status_code == 200
    paused: set[str] = set()
    while len(paused) < len(running) - 1:
        event = (await stream.until(lambda e: e.type == "worker.idle.paused", timeout=30))[-1]
        paused.add(str(event.subject))
    assert keep["id"] not in paused
    for worker in running:
        state = sandbox.state(worker["aws_instance_id"])
        if worker["id"] in paused:
            assert state in ("stopping", "stopped")
            detail = (await api.get(f"/api/workers/{worker['id']}")).json()
            assert (detail["auto_pauses"], detail["manual_pauses"]) == (1, 0)
        else:
            assert state == "running"


async def test_resumed_worker_is_snoozed(fleet: Any, sandbox: Sandbox) -> None:
    api, stream, workers = fleet
    stopped = next(w for w in workers.values() if w["status"] == "stopped")
    done = await run_command(api, stream, "POST", f"/api/workers/{stopped['id']}/start")
    assert done.type == "command.completed", done.data["data"]
    assert (await api.get(f"/api/workers/{stopped['id']}")).json()["last_resumed_at"] is not None
    settings = {"jobs.idle-detection.enabled": True, "jobs.idle-detection.interval_seconds": 2}
    await api.put("/api/system/settings", json={"values": settings})
    # Two idle-detection runs after the resume; the resumed worker must not be among the paused.
    seen = await stream.until(lambda e: e.type == "job.run.completed" and e.data["data"]["job"] == "idle-detection")
    seen += await stream.until(lambda e: e.type == "job.run.completed" and e.data["data"]["job"] == "idle-detection")
    assert all(e.subject != stopped["id"] for e in seen if e.type == "worker.idle.paused")
    assert sandbox.state(stopped["aws_instance_id"]) in ("pending", "running")


async def test_labs_refresh_job_picks_up_changes_made_directly_in_cml(fleet: Any, sandbox: Sandbox) -> None:
    api, stream, workers = fleet
    worker = next(w for w in workers.values() if w["status"] == "running")
    async with CMLClient(f"{sandbox.cml_url}/hosts/{worker['aws_instance_id']}", "admin", "admin") as cml:
        topology = await cml.download_lab((await cml.list_labs())[0])
        created = await cml.import_lab(topology, title="made outside the manager")
    event = (
        await stream.until(lambda e: e.type == "lab.created" and e.data["data"]["cml_lab_id"] == created.id, timeout=30)
    )[-1]
    assert event.subject == worker["id"] and event.data["data"]["title"] == "made outside the manager"
    runs = (await api.get("/api/system/jobs/labs-refresh/runs", params={"limit": 3})).json()["items"]
    assert any(run["outcome"] == "success" for run in runs)
