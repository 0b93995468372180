"""Process heartbeats and what they tell: whether a worker is alive to run a queued command, which API replicas
are up. Times are the database's, so the boundaries are exact."""

from __future__ import annotations

from datetime import timedelta

from cml_cloud_manager.jobs.processes import Work, WorkerLiveness, api_replicas, beat, forget, worker_liveness
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import ProcessRow

ALIVE = 20.0


async def test_a_worker_is_alive_up_to_exactly_its_alive_window(db: Database) -> None:
    async with db.session() as session:
        now = await db.now(session)
        for process_id, role, ago in (
            ("worker-edge", "worker", ALIVE),
            ("all-fresh", "all", 1.0),
            ("worker-dead", "worker", ALIVE + 0.001),
            ("api-1", "api", 0.0),  # an API process never runs commands
        ):
            at = now - timedelta(seconds=ago)
            await beat(
                session, process_id=process_id, role=role, hostname="h", pid=1, now=at, jobs=Work(commands=int(ago))
            )

    async with db.session(write=False) as session:
        liveness = await worker_liveness(session, now=now, alive_seconds=ALIVE)
        replicas = await api_replicas(session, now=now, alive_seconds=ALIVE)

    assert (liveness.alive, liveness.replicas) == (True, 2)
    assert [p.id for p in liveness.processes] == ["all-fresh", "worker-edge"]  # newest heartbeat first
    assert [p.jobs.commands for p in liveness.processes] == [1, int(ALIVE)]
    assert liveness.last_heartbeat == now - timedelta(seconds=1)
    assert [r.id for r in replicas] == ["api-1"]


async def test_a_beat_renews_the_same_record_and_forget_removes_it(db: Database) -> None:
    async with db.session() as session:
        now = await db.now(session)
        old = now - timedelta(minutes=5)
        await beat(session, process_id="w1", role="worker", hostname="h", pid=7, now=old, jobs=Work())
    async with db.session(write=False) as session:
        assert not (await worker_liveness(session, now=now, alive_seconds=ALIVE)).alive
    async with db.session() as session:
        await beat(session, process_id="w1", role="worker", hostname="h", pid=7, now=now, jobs=Work(running=["x"]))
    async with db.session(write=False) as session:
        row = await session.get(ProcessRow, "w1")
        liveness = await worker_liveness(session, now=now, alive_seconds=ALIVE)
    stored = {"running": ["x"], "commands": 0}
    assert row is not None and (row.started_at, row.last_heartbeat, row.jobs) == (old, now, stored)
    assert liveness.alive and liveness.processes[0].jobs == Work(running=["x"])

    async with db.session() as session:
        await forget(session, "w1")
    async with db.session(write=False) as session:
        gone = await worker_liveness(session, now=now, alive_seconds=ALIVE)
    assert gone == WorkerLiveness(alive=False, replicas=0, last_heartbeat=None, processes=[])
