"""Faults: a worker killed mid-run, Redis going away, a client that stops reading, many replicas."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cml_cloud_manager.events import outbox
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import CommandRow, EventRow, JobRunRow

from ..events.probe import Probe
from ..sse import Event, open_stream
from .conftest import Sandbox
from .faults import PrivateRedis

pytestmark = pytest.mark.e2e


def pid_of(process_id: str) -> int:
    """Process ids look like `worker@host:PID:suffix`."""
    return int(process_id.split(":")[-2])


async def test_killed_worker_job_and_command_resume_elsewhere(
    sandbox: Sandbox, start: Any, stack_env: dict[str, str], db_of: Database
) -> None:
    stack_env.update({"WORKER_METRICS_INTERVAL": "15", "LABS_REFRESH_ENABLED": "false", "CML_TIMEOUT": "15"})
    api = await start("api")
    workers = {p.popen.pid: p for p in [await start("worker") for _ in range(3)]}
    async with httpx.AsyncClient(base_url=api.url) as client, open_stream(api.url) as stream:
        await stream.next()
        while len((await client.get("/api/workers")).json()["items"]) < len(sandbox.instance_ids):
            await stream.until(lambda e: e.type == "worker.created")
        # Every CML host answers slowly from now on, so runs and commands take seconds: time to kill them.
        for instance_id in sandbox.instance_ids:
            sandbox.sim("PATCH", f"/hosts/{instance_id}/config", {"slow_seconds": 1.5})
        items = (await client.get("/api/workers")).json()["items"]
        target = next(w["id"] for w in items if w["status"] == "running")

        # A command whose worker dies is run again elsewhere, to completion once.
        response = await client.post(f"/api/workers/{target}/labs/refresh")
        assert response.status_code == 202, response.text
        accepted = response.json()

        def mine(e: Event) -> bool:
            return bool(e.data["data"].get("command_id") == accepted["command_id"])

        first = await stream.wait_for(lambda e: e.type == "command.started" and mine(e))
        victim = pid_of(first.data["data"]["claimed_by"])
        os.kill(victim, signal.SIGKILL)
        workers.pop(victim).popen.wait()
        retry = await stream.wait_for(
            lambda e: e.type == "command.started" and mine(e) and e.data["data"]["attempt"] == 2
        )
        assert pid_of(retry.data["data"]["claimed_by"]) != victim
        done = await stream.wait_for(lambda e: e.type in ("command.completed", "command.failed") and mine(e), 60)
        assert done.type == "command.completed", done.data

        # A scheduled run whose worker dies is taken over by another replica.
        started = await stream.wait_for(
            lambda e: (
                e.type == "job.run.started"
                and e.data["data"]["job"] == "worker-metrics"
                and e.data["data"]["trigger"] == "schedule"
                and pid_of(e.data["data"]["claimed_by"]) in workers
            ),
            timeout=40,
        )
        run_id = started.data["data"]["run_id"]
        victim = pid_of(started.data["data"]["claimed_by"])
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        workers.pop(victim).popen.wait()
        taken = await stream.wait_for(
            lambda e: (
                e.type == "job.run.started" and e.data["data"]["run_id"] == run_id and e.data["data"]["attempt"] == 2
            )
        )
        failover = time.monotonic() - killed_at
        assert pid_of(taken.data["data"]["claimed_by"]) in workers and taken.data["data"]["taken_from"]
        assert failover < 30, f"failover took {failover:.1f}s"
        print(f"\nfailover after kill -9: {failover:.1f}s")
        finished = await stream.wait_for(
            lambda e: e.type == "job.run.completed" and e.data["data"]["run_id"] == run_id, timeout=40
        )
    assert finished.data["data"]["outcome"] in ("success", "timeout")
    async with db_of.session(write=False) as session:
        command = await session.get(CommandRow, accepted["command_id"])
        run = await session.get(JobRunRow, run_id)
    assert command is not None and (command.status, command.attempts) == ("succeeded", 2)
    assert run is not None and run.attempts == 2 and run.outcome == finished.data["data"]["outcome"]


async def test_redis_outage_loses_no_event(
    start: Any, stack_env: dict[str, str], private_redis: PrivateRedis, db_of: Database
) -> None:
    stack_env.update({"REDIS_URL": private_redis.url, "RELAY_SAFETY_POLL_INTERVAL": "1"})
    api = await start("api")
    await start("worker")
    received: list[int] = []
    async with httpx.AsyncClient(base_url=api.url) as client, open_stream(api.url) as stream:
        first = (await stream.next()).data["sequence"]

        async def collect(n: int) -> None:
            for _ in range(n):
                event = (await stream.until(lambda e: e.id is not None))[-1]
                assert event.id is not None
                received.append(event.id)

        await collect(3)
        private_redis.kill()
        await collect(4)  # housekeeping keeps producing events; the relay now polls
        health = (await client.get("/api/health")).json()
        assert health["components"]["redis"] == "down" and health["status"] == "degraded"
        private_redis.start()
        await collect(4)
        health = (await client.get("/api/health")).json()
        assert health["components"]["redis"] == "up", health
    async with db_of.session(write=False) as session:
        expected = list(
            (
                await session.scalars(
                    select(EventRow.seq)
                    .where(EventRow.seq > first, EventRow.seq <= received[-1])
                    .order_by(EventRow.seq)
                )
            ).all()
        )
    assert received == expected, "events lost or repeated across the Redis outage"


async def test_stalled_client_is_dropped_others_unaffected(
    start: Any, stack_env: dict[str, str], db_of: Database
) -> None:
    stack_env.update({"SSE_CLIENT_QUEUE_SIZE": "200", "HOUSEKEEPING_ENABLED": "false"})
    api = await start("api")
    assert api.port is not None
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", api.port))
    stalled.sendall(b"GET /api/events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    count = 1_000  # ~10 MB: more than the kernel buffers between the API and a client that never reads
    async with httpx.AsyncClient(base_url=api.url) as client, open_stream(api.url) as healthy:
        await healthy.next()
        received: list[int] = []
        # In steps the healthy client can follow; the stalled one falls further behind with each step.
        for start_at in range(0, count, 100):
            async with db_of.session() as session:
                for i in range(start_at, start_at + 100):
                    await outbox.append(session, Probe(i=i, pad="x" * 10_000), type="test.bulk")
            last = start_at + 99

            def step_done(e: Event, last: int = last) -> bool:
                return e.type == "test.bulk" and e.data["data"]["i"] == last

            bulk = await healthy.until(step_done)
            received += [e.data["data"]["i"] for e in bulk if e.type == "test.bulk"]
        metrics = (await client.get("/metrics")).text
        health = (await client.get("/api/health")).json()
    stalled.close()
    assert received == list(range(count)), "the healthy client missed or reordered events"
    dropped = next(line for line in metrics.splitlines() if line.startswith("sse_clients_dropped_total"))
    assert float(dropped.split()[-1]) == 1
    assert health["components"]["sse_clients"] == 1


async def test_replicas_every_tick_once_every_event_to_every_client(
    start: Any, stack_env: dict[str, str], db_of: Database
) -> None:
    """2 APIs, 3 workers, 30+ ticks of a 1-second job."""
    apis = [await start("api"), await start("api")]
    for _ in range(3):
        await start("worker")
    async with open_stream(apis[0].url) as s1, open_stream(apis[1].url) as s2:
        # Events may commit between the two connections: each stream starts after its own position.
        afters = [(await s1.next()).data["sequence"], (await s2.next()).data["sequence"]]
        got: list[list[Event]] = []
        for stream in (s1, s2):
            events: list[Event] = []
            while sum(e.type == "job.run.completed" for e in events) < 32:
                events += await stream.until(lambda e: e.type == "job.run.completed", timeout=30)
            got.append(events)
    async with db_of.session(write=False) as session:
        runs = (
            await session.scalars(
                select(JobRunRow)
                .where(JobRunRow.job_name == "housekeeping", JobRunRow.trigger == "schedule")
                .order_by(JobRunRow.scheduled_at)
            )
        ).all()
        last = min(max(e.id or 0 for e in events) for events in got)
        committed = list(
            (await session.scalars(select(EventRow.seq).where(EventRow.seq <= last).order_by(EventRow.seq))).all()
        )
    ticks = [run.scheduled_at for run in runs]
    assert len(ticks) == len(set(ticks)) >= 30
    assert {(b - a).total_seconds() for a, b in itertools.pairwise(ticks[1:])} == {1.0}
    assert len({run.claimed_by for run in runs}) >= 2, "the ticks should spread over the replicas"
    for events, after in zip(got, afters, strict=True):
        ids = [e.id for e in events if e.id is not None and e.id <= last]
        assert ids == [seq for seq in committed if seq > after]
