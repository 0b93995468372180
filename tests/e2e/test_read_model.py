"""The fleet served from each API replica's memory (`workers/readmodel.py`) on the real stack: two API replicas and a
worker, writers on both replicas at once with the jobs running; then each replica lists exactly what the table
holds. And read-your-writes across replicas: a write on one, then a read naming it on the other, sees it."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import EventRow
from cml_cloud_manager.workers.events import WorkersObserved

from ..sse import open_stream
from ..workers.test_readmodel import table
from .conftest import Sandbox
from .processes import Proc
from .test_fleet import fleet_ready

pytestmark = pytest.mark.e2e

WRITERS = 4
RUN_SECONDS = 12.0
# Answers a random write may get besides success: the worker is gone (another writer removed it), its state
# forbids the action, or a refresh came moments after another.
REFUSED = {404, 409, 429}


async def newest(db: Database) -> int:
    async with db.session(write=False) as session:
        return (await session.execute(select(func.max(EventRow.seq)))).scalar() or 0


async def random_write(
    client: httpx.AsyncClient, api: Proc, rng: random.Random, spared: str, ami_id: str
) -> httpx.Response | None:
    """One write of a random kind to a random worker (never to `spared`, which read-your-writes checks); new
    workers are launched from `ami_id`."""
    listed = (await client.get(f"{api.url}/api/workers", params={"limit": 1000})).json()["items"]
    workers = [w for w in listed if w["id"] != spared]
    if not workers:
        return None
    worker = rng.choice(workers)
    base = f"{api.url}/api/workers/{worker['id']}"
    kind = rng.choices(["idle", "snooze", "stop", "start", "tags", "refresh", "monitoring", "remove", "create"],
                       weights=[4, 3, 2, 2, 2, 2, 1, 1, 1])[0]  # fmt: skip
    if kind == "idle":
        return await client.put(f"{base}/idle", json={"enabled": rng.random() < 0.5})
    if kind == "snooze":
        return await client.put(f"{base}/idle", json={"snooze_minutes": round(rng.uniform(1, 600), 3)})
    if kind in ("stop", "start", "refresh"):
        return await client.post(f"{base}/{kind}")
    if kind == "tags":
        return await client.put(f"{base}/tags", json={"set": {"round": str(rng.randrange(1000))}})
    if kind == "monitoring":
        return await client.post(f"{base}/monitoring", json={"enabled": rng.random() < 0.5})
    if kind == "remove":  # out of the fleet, then back: lifting the exclusion lets auto-import bring it in again
        removed = await client.delete(base)
        if removed.status_code == 200 and worker["aws_instance_id"]:
            return await client.delete(f"{api.url}/api/exclusions/{worker['aws_instance_id']}")
        return removed
    name = f"made-{rng.randrange(10**6)}"
    return await client.post(f"{api.url}/api/workers", json={"name": name, "ami_id": ami_id})


async def test_every_replica_serves_the_table_after_concurrent_writers(
    sandbox: Sandbox, start: Any, stack_env: dict[str, str], db_of: Database
) -> None:
    # Metric changes below the threshold announce nothing of their own: only `workers.observed` names them.
    stack_env["METRICS_CHANGE_THRESHOLD"] = "100"
    apis = [await start("api"), await start("api")]
    worker = await start("worker")
    seed = random.randrange(1 << 32)
    print(f"\nrandom seed {seed}")
    async with httpx.AsyncClient(timeout=15) as client:
        async with open_stream(apis[0].url) as stream, httpx.AsyncClient(base_url=apis[0].url, timeout=15) as first:
            await stream.next()
            spared = min((await fleet_ready(first, stream, len(sandbox.instance_ids))).values(), key=lambda w: w["id"])
        deadline = time.monotonic() + RUN_SECONDS
        answers: list[int] = []

        async def writer(number: int) -> None:
            rng = random.Random(seed + number)
            while time.monotonic() < deadline:
                response = await random_write(client, rng.choice(apis), rng, spared["id"], spared["ami_id"])
                if response is not None:
                    answers.append(response.status_code)
                    assert response.status_code < 300 or response.status_code in REFUSED, response.text

        checked = 0

        async def reader_of_its_writes() -> None:
            """Writes on one replica, reads on the other naming the write: the read shows it, every time."""
            nonlocal checked
            rng = random.Random(seed)
            while time.monotonic() < deadline:
                on, other = rng.sample(apis, 2)
                minutes = round(rng.uniform(1, 600), 3)
                written = await client.put(
                    f"{on.url}/api/workers/{spared['id']}/idle", json={"snooze_minutes": minutes}
                )
                assert written.status_code == 200, written.text
                headers = {"X-Event-Sequence": written.headers["x-event-sequence"]}
                read = await client.get(f"{other.url}/api/workers/{spared['id']}", headers=headers)
                assert read.json()["snoozed_until"] == written.json()["snoozed_until"], (checked, read.json())
                checked += 1

        await asyncio.gather(reader_of_its_writes(), *(writer(n) for n in range(WRITERS)))
        print(f"{len(answers)} random writes ({sum(a < 300 for a in answers)} accepted), {checked} read back")
        assert checked >= 10 and sum(a < 300 for a in answers) >= 20

        # Nothing writes once the worker is gone; then every replica must show the table, whatever happened.
        code, _ = await asyncio.to_thread(worker.stop)
        assert code == 0, worker.output()[-4000:]
        expected, position = await table(db_of), await newest(db_of)
        async with db_of.session(write=False) as session:
            observed = (
                await session.execute(select(func.count()).where(EventRow.type.in_(WorkersObserved.types)))
            ).scalar_one()
        assert observed and expected
        for api in apis:
            headers = {"X-Event-Sequence": str(position)}
            listed = (await client.get(f"{api.url}/api/workers", params={"limit": 1000}, headers=headers)).json()
            assert listed["total"] == len(expected)
            for shown, stored in zip(listed["items"], expected, strict=True):
                assert shown == stored, f"{api.url} shows {shown['name']} unlike the table"
            one = await client.get(f"{api.url}/api/workers/{expected[-1]['id']}", headers=headers)
            assert one.json() == expected[-1]
            summary = (await client.get(f"{api.url}/api/workers/summary", headers=headers)).json()
            assert summary["total"] == len(expected)
    for proc in [*apis, worker]:
        assert "Traceback" not in proc.output(), proc.output()[-4000:]
