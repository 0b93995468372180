"""A command that changes an instance's state follows it to its end: the fleet shows `stopped` or `running` (and
CML's state) when EC2 and CML report it, not at the next worker-metrics run, which here is minutes away."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from ..sse import Event, open_stream
from .conftest import Sandbox
from .test_fleet import command_done, fleet_ready

pytestmark = pytest.mark.e2e

# The target: with the default worker-metrics interval, `stopped` shows within 5 s of EC2 reporting it.
TARGET_SECONDS = 5.0


@pytest.fixture
async def slow_metrics(sandbox: Sandbox, start: Any) -> Any:
    """api + worker with worker-metrics at its default interval: only the commands can make states current."""
    api = await start("api", WORKER_METRICS_INTERVAL="300")
    await start("worker", WORKER_METRICS_INTERVAL="300")
    async with httpx.AsyncClient(base_url=api.url, timeout=15) as client, open_stream(api.url) as stream:
        await stream.next()
        yield client, stream, await fleet_ready(client, stream, len(sandbox.instance_ids))


async def test_a_stop_shows_stopped_within_5s_of_ec2_reporting_it(slow_metrics: Any, sandbox: Sandbox) -> None:
    api, stream, workers = slow_metrics
    worker = next(w for w in workers.values() if w["status"] == "running")
    accepted = await api.post(f"/api/workers/{worker['id']}/stop")
    assert accepted.status_code == 202, accepted.text
    # The emulator's answer and ours, side by side: when did EC2 first say `stopped`, and when did the API?
    ec2_at = api_at = None
    began = time.monotonic()
    while ec2_at is None or api_at is None:
        now = time.monotonic()
        if ec2_at is None and await asyncio.to_thread(sandbox.state, worker["aws_instance_id"]) == "stopped":
            ec2_at = now
        if api_at is None and (await api.get(f"/api/workers/{worker['id']}")).json()["status"] == "stopped":
            api_at = now
        assert now - began < 30, "EC2 never reported the instance stopped"
        if ec2_at is not None:
            lag = now - ec2_at
            assert api_at is not None or lag <= TARGET_SECONDS, f"the API still says stopping {lag:.1f}s after EC2"
        await asyncio.sleep(0.05)  # the pace of the two polls, not a wait for anything
    print(f"stop: the API showed 'stopped' {max(0.0, api_at - ec2_at):.2f}s after EC2 reported it")

    done = await stream.wait_for(command_done(accepted.json()["command_id"]))
    assert done.type == "command.completed", done.data
    assert done.data["data"]["result"]["status"] == "stopped"


async def test_a_start_follows_the_instance_then_cml_until_it_answers(slow_metrics: Any, sandbox: Sandbox) -> None:
    api, stream, workers = slow_metrics
    worker = next(w for w in workers.values() if w["status"] == "stopped")
    # CML on a host that was just started does not answer at first.
    sandbox.sim("PATCH", f"/hosts/{worker['aws_instance_id']}/config", {"unreachable": True})
    accepted = await api.post(f"/api/workers/{worker['id']}/start")
    assert accepted.status_code == 202, accepted.text
    command_id = accepted.json()["command_id"]

    def mine(e: Event) -> bool:
        return e.subject == worker["id"] and e.type == "worker.status.updated" and e.data["data"]["status"] == "running"

    seen = await stream.until(mine, timeout=30)
    assert not any(command_done(command_id)(e) for e in seen), "the command ended before the instance ran"
    state = (await api.get(f"/api/workers/{worker['id']}")).json()
    assert state["service_status"] in ("starting", "unavailable"), state

    sandbox.sim("PATCH", f"/hosts/{worker['aws_instance_id']}/config", {"unreachable": False})
    seen = await stream.until(command_done(command_id), timeout=60)
    done = seen[-1]
    assert done.type == "command.completed", done.data
    assert done.data["data"]["result"] == {"status": "running", "service_status": "available", "settled": True}
    assert any(e.type == "worker.service.updated" and e.subject == worker["id"] for e in seen)
    state = (await api.get(f"/api/workers/{worker['id']}")).json()
    assert (state["status"], state["service_status"], state["cml_ready"]) == ("running", "available", True)


async def test_create_follows_the_new_instance_until_cml_answers(slow_metrics: Any, sandbox: Sandbox) -> None:
    api, stream, _ = slow_metrics
    ami = sandbox.ec2().describe_images(Owners=["self"])["Images"][0]["ImageId"]
    accepted = await api.post("/api/workers", json={"name": "followed", "ami_id": ami})
    assert accepted.status_code == 202, accepted.text
    done = (await stream.until(command_done(accepted.json()["command_id"]), timeout=60))[-1]
    assert done.type == "command.completed", done.data
    result = done.data["data"]["result"]
    assert (result["status"], result["service_status"], result["settled"]) == ("running", "available", True)
    worker = next(w for w in (await api.get("/api/workers")).json()["items"] if w["name"] == "followed")
    assert (worker["status"], worker["service_status"], worker["cml_ready"]) == ("running", "available", True)


async def test_terminate_follows_the_instance_until_it_is_gone(slow_metrics: Any, sandbox: Sandbox) -> None:
    api, stream, workers = slow_metrics
    worker = next(w for w in workers.values() if w["status"] == "running")
    accepted = await api.delete(f"/api/workers/{worker['id']}", params={"terminate": "true"})
    assert accepted.status_code == 202, accepted.text
    seen = await stream.until(command_done(accepted.json()["command_id"]), timeout=60)
    assert seen[-1].type == "command.completed", seen[-1].data
    mine = [e for e in seen if e.subject == worker["id"]]
    statuses = [e.data["data"]["status"] for e in mine if e.type == "worker.status.updated"]
    # Each transition is announced as it is seen, and the record goes only once the instance is gone.
    assert statuses[-1] == "terminated", statuses
    assert [e.type for e in mine if e.type in ("worker.status.updated", "worker.deleted")][-1] == "worker.deleted"
    assert sandbox.state(worker["aws_instance_id"]) == "terminated"
    assert (await api.get(f"/api/workers/{worker['id']}")).status_code == 404


async def test_an_idle_stop_is_followed_too(slow_metrics: Any, sandbox: Sandbox) -> None:
    api, stream, _ = slow_metrics
    settings = {"jobs.idle-detection.enabled": True, "jobs.idle-detection.interval_seconds": 2}
    assert (await api.put("/api/system/settings", json={"values": settings})).status_code == 200
    paused = (await stream.until(lambda e: e.type == "worker.idle.paused", timeout=30))[-1]
    await stream.wait_for(
        lambda e: (
            e.subject == paused.subject and e.type == "worker.status.updated" and e.data["data"]["status"] == "stopped"
        ),
        timeout=15,
    )
