"""Removing a worker from the fleet sticks: auto-import leaves its instance alone until the exclusion is lifted."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from ..sse import Event, Stream, open_stream
from .conftest import Sandbox
from .test_fleet import fleet_ready

pytestmark = pytest.mark.e2e


def cli(sandbox: Sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": sandbox.env["DATABASE_URL"]}
    argv = [sys.executable, "-m", "cml_cloud_manager", "exclusions", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


async def auto_import_runs(stream: Stream, count: int) -> None:
    """Until `count` more auto-import runs completed (the job runs every 2 s here)."""
    for _ in range(count):
        await stream.until(lambda e: e.type == "job.run.completed" and e.data["data"]["job"] == "auto-import")


async def test_a_removed_worker_stays_out_until_its_exclusion_is_lifted(sandbox: Sandbox, start: Any) -> None:
    api = await start("api")
    await start("worker")
    async with httpx.AsyncClient(base_url=api.url, timeout=15) as client, open_stream(api.url) as stream:
        await stream.next()
        workers = await fleet_ready(client, stream, len(sandbox.instance_ids))
        worker = next(w for w in workers.values() if w["status"] == "running")
        instance_id = worker["aws_instance_id"]

        removed = await client.delete(f"/api/workers/{worker['id']}")
        assert removed.status_code == 200, removed.text
        assert removed.json() == {"deleted": worker["id"], "terminated": False, "excluded": instance_id}
        listed = (await client.get("/api/exclusions")).json()
        assert listed["total"] == 1 and listed["items"][0]["aws_instance_id"] == instance_id
        assert listed["items"][0]["name"] == worker["name"]

        # The first run may have begun before the removal; the second began after it.
        await auto_import_runs(stream, 2)
        names = [w["name"] for w in (await client.get("/api/workers")).json()["items"]]
        assert worker["name"] not in names and len(names) == len(sandbox.instance_ids) - 1
        assert sandbox.state(instance_id) == "running"  # removing is not stopping
        refused = await client.post("/api/workers/import", json={"instance_id": instance_id})
        assert refused.status_code == 409 and f"exclusions lift {instance_id}" in refused.json()["detail"]

        shown = await asyncio.to_thread(cli, sandbox, "list")
        assert shown.returncode == 0, shown.stderr
        assert instance_id in shown.stdout and worker["name"] in shown.stdout
        lifted = await asyncio.to_thread(cli, sandbox, "lift", instance_id)
        assert lifted.returncode == 0 and "lifted" in lifted.stdout, lifted.stderr
        again = await asyncio.to_thread(cli, sandbox, "lift", instance_id)
        assert again.returncode == 1 and f"'{instance_id}' is not excluded" in again.stderr

        def back(e: Event) -> bool:
            return e.type == "worker.created" and e.data["data"]["worker"]["aws_instance_id"] == instance_id

        await stream.wait_for(back, timeout=30)
        assert (await client.get("/api/exclusions")).json()["total"] == 0
        missing = await client.delete(f"/api/exclusions/{instance_id}")
        assert missing.status_code == 404 and "GET /api/exclusions" in missing.json()["detail"]
