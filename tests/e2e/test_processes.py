"""Real `api` and `worker` processes, talking through the database (and Redis on PostgreSQL runs)."""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import EventRow, JobRunRow, ProcessRow

from ..sse import Event, open_stream

pytestmark = pytest.mark.e2e


def is_type(name: str) -> Any:
    return lambda e: e.type == name


async def run_job(api_url: str, job: str = "housekeeping") -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=api_url) as client:
        response = await client.post(f"/api/system/jobs/{job}/run")
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_worker_events_reach_sse_and_api_never_runs_jobs(start: Any, db_of: Database) -> None:
    api = await start("api")
    worker = await start("worker")
    async with open_stream(api.url) as stream:
        assert (await stream.next()).event == "connected"
        assert (await stream.next()).event == "snapshot"
        accepted = await run_job(api.url)
        assert accepted["worker_alive"] is True
        seen = await stream.until(
            lambda e: e.type == "command.completed" and e.data["data"]["command_id"] == accepted["command_id"]
        )
    completed = [e for e in seen if e.type == "job.run.completed"]
    assert completed and all("/worker@" in e.data["source"] for e in completed)
    async with db_of.session(write=False) as session:
        claimers = set((await session.scalars(select(JobRunRow.claimed_by))).all())
    assert claimers and all(c.startswith("worker@") for c in claimers)
    api.stop()
    worker.stop()
    assert "Background jobs: DISABLED" in api.output()
    assert "job housekeeping started" not in api.output()
    assert "job housekeeping started" in worker.output()
    assert "HTTP/1.1" not in worker.output()


async def test_every_api_replica_delivers_every_event_in_order(start: Any, db_of: Database) -> None:
    api1 = await start("api")
    api2 = await start("api")
    await start("worker")
    async with open_stream(api1.url) as s1, open_stream(api2.url) as s2:
        c1, c2 = await s1.next(), await s2.next()
        after = max(c1.data["sequence"], c2.data["sequence"])
        got: list[list[int]] = []
        for stream in (s1, s2):
            events = await stream.until(lambda e: e.id is not None and e.id >= after + 6, timeout=30)
            got.append([e.id for e in events if e.id is not None and e.id > after])
    target = after + 6
    async with db_of.session(write=False) as session:
        expected = list(
            (await session.scalars(select(EventRow.seq).where(EventRow.seq > after, EventRow.seq <= target))).all()
        )
    assert [ids[: len(expected)] for ids in got] == [expected, expected]


async def test_reconnect_with_last_event_id_gets_exactly_what_was_missed(start: Any) -> None:
    api = await start("api")
    await start("worker")
    async with open_stream(api.url) as watcher:
        await watcher.next()
        async with open_stream(api.url) as first:
            await first.until(lambda e: e.id is not None)
            last = first.last_id
        assert last is not None
        missed = [e.id for e in await watcher.until(lambda e: e.id is not None and e.id >= last + 4) if e.id]
        missed = [i for i in missed if i > last]
        async with open_stream(api.url, headers={"Last-Event-ID": str(last)}) as resumed:
            connected = await resumed.next()
            assert connected.data["resuming_after"] == last
            replay: list[Event] = await resumed.until(lambda e: e.id is not None and e.id >= missed[-1])
    ids = [e.id for e in replay if e.id is not None]
    assert ids == missed
    assert not any(e.event == "snapshot" for e in replay)


async def test_two_workers_never_run_the_same_tick(start: Any, db_of: Database) -> None:
    api = await start("api")
    await start("worker")
    await start("worker")
    async with open_stream(api.url, params={"event_types": "job.run.completed"}) as stream:
        await stream.next()
        for _ in range(6):  # other jobs complete on this stream too; only housekeeping's runs are counted below
            await stream.until(lambda e: e.type == "job.run.completed" and e.subject == "housekeeping")
    async with db_of.session(write=False) as session:
        runs = (
            await session.scalars(
                select(JobRunRow).where(JobRunRow.job_name == "housekeeping").order_by(JobRunRow.scheduled_at)
            )
        ).all()
    ticks = [r.scheduled_at for r in runs if r.trigger == "schedule"]
    assert len(ticks) == len(set(ticks)) >= 6
    steps = {(b - a).total_seconds() for a, b in itertools.pairwise(ticks[1:])}
    assert steps == {1.0}, f"ticks skipped or repeated: {ticks}"


async def test_sigterm_stops_each_process_cleanly_with_an_open_stream(start: Any, db_of: Database) -> None:
    api = await start("api")
    worker = await start("worker")
    async with open_stream(api.url) as stream:
        await stream.next()
        code, took = api.stop(signal.SIGTERM)
        shutdown = await stream.until(lambda e: e.event == "shutdown", timeout=5)
    assert shutdown[-1].data["reconnect"] is True
    assert code == 0 and took < 10
    code, took = worker.stop(signal.SIGTERM)
    assert code == 0 and took < 10
    async with db_of.session(write=False) as session:
        assert (await session.scalars(select(ProcessRow))).all() == []


async def test_without_a_worker_commands_wait_and_health_says_degraded(start: Any) -> None:
    api = await start("api")
    async with httpx.AsyncClient(base_url=api.url) as client:
        health = (await client.get("/api/health")).json()
        assert health["status"] == "degraded"
        assert health["components"]["worker"]["alive"] is False
        assert health["components"]["background_jobs"] == "disabled"
        accepted = await run_job(api.url)
        assert accepted["worker_alive"] is False
        assert "no worker process is alive" in accepted["message"]
        assert (await client.get(f"/api/commands/{accepted['command_id']}")).json()["status"] == "queued"
        async with open_stream(api.url, params={"event_types": "command.*"}) as stream:
            await stream.next()
            await start("worker")
            done = await stream.until(
                lambda e: (
                    e.type in ("command.completed", "command.failed")
                    and e.data["data"]["command_id"] == accepted["command_id"]
                )
            )
        assert done[-1].type == "command.completed", done[-1].data
        health = (await client.get("/api/health")).json()
        assert health["status"] == "ok" if health["components"]["redis"] != "down" else "degraded"
        assert health["components"]["worker"]["alive"] is True


async def _until_worker_alive(up: Any) -> None:
    """Polls the API's health (10 s at most) until it reports the worker under `up` alive."""
    async with httpx.AsyncClient(base_url=up.url) as client:
        for _ in range(100):
            if (await client.get("/api/health")).json()["components"]["worker"]["alive"]:
                return
            await asyncio.sleep(0.1)
    raise AssertionError("worker never came alive under `up`")


async def test_up_runs_both_and_fails_when_one_dies(start: Any, stack_env: dict[str, str], tmp_path: Any) -> None:
    from .processes import free_port, spawn, wait_ready

    port = free_port()
    up = spawn("up", {**stack_env, "APP_PORT": str(port)}, tmp_path)
    up.port = port
    await wait_ready(up)
    await _until_worker_alive(up)
    worker_pid = int(
        next(line for line in up.output().splitlines() if "started worker (pid" in line).split("pid ")[1].rstrip(")")
    )
    import os

    os.kill(worker_pid, signal.SIGKILL)
    code = up.popen.wait(20)
    assert code != 0
    assert "worker exited unexpectedly" in up.output()


def _stat(pid: int, task: int | None = None) -> list[str]:
    """Fields of /proc/<pid>[/task/<tid>]/stat after the command name: [0] is field 3 (state)."""
    path = f"/proc/{pid}/task/{task}/stat" if task is not None else f"/proc/{pid}/stat"
    with open(path) as stat:
        return stat.read().rsplit(")", 1)[1].split()


def _niceness_of_threads(pid: int) -> set[int]:
    import os

    return {int(_stat(pid, int(tid))[16]) for tid in os.listdir(f"/proc/{pid}/task")}  # field 19: nice


def _autogroups(pids: Iterable[int]) -> set[str] | None:
    """The autogroup of each process (`/autogroup-N nice 0`), None where autogroups do not apply: a kernel
    without them, or processes in a cgroup with its own CPU controller (the kernel then prints nothing)."""
    if not Path("/proc/sys/kernel/sched_autogroup_enabled").exists():
        return None
    shown = [Path(f"/proc/{pid}/autogroup").read_text().split() for pid in pids]
    if not all(shown):
        return None
    return {fields[0] for fields in shown}


async def test_up_starts_the_worker_at_a_lower_cpu_priority(stack_env: dict[str, str], tmp_path: Any) -> None:
    """WORKER_NICE (10 by default) on every thread of the worker, none on the API's, and both in one session
    and autogroup, where a niceness weighs against the other process (in separate sessions it would not)."""
    import os

    from .processes import free_port, spawn, wait_ready

    port = free_port()
    up = spawn("up", {**stack_env, "APP_PORT": str(port)}, tmp_path)
    up.port = port
    try:
        await wait_ready(up)
        await _until_worker_alive(up)
        pids = {
            role: int(line.split("pid ")[1].rstrip(")"))
            for line in up.output().splitlines()
            for role in ("api", "worker")
            if f"started {role} (pid" in line
        }
        started_at = os.getpriority(os.PRIO_PROCESS, up.popen.pid)  # what both children inherit from `up`
        assert _niceness_of_threads(pids["worker"]) == {max(started_at, 10)}, up.output()[-2000:]
        assert _niceness_of_threads(pids["api"]) == {started_at}
        # stat field 6 is the session: `up`'s own, shared by both children; field 5, the process group, is not
        # `up`'s (a terminal's Ctrl+C reaches `up` alone, which forwards one SIGTERM).
        up_stat = _stat(up.popen.pid)
        for pid in pids.values():
            assert _stat(pid)[3] == up_stat[3]
            assert _stat(pid)[2] != up_stat[2]
        autogroups = _autogroups(pids.values())
        assert autogroups is None or len(autogroups) == 1, autogroups
    finally:
        code, _ = up.stop(signal.SIGINT)
    assert code == 0, up.output()[-2000:]


async def test_up_sandbox_brings_up_a_fleet_by_itself(tmp_path: Any) -> None:
    """The README's first command: emulator + simulator + api + worker, the demo fleet appears on its own."""
    from .processes import free_port, spawn, wait_ready

    port = free_port()
    up = spawn("up", {"APP_PORT": str(port)}, tmp_path, "--sandbox", cwd=tmp_path)
    up.port = port
    try:
        await wait_ready(up, timeout=60)
        # Token mode, as a newcomer gets it: the generated admin token is in var/admin-token.
        token = (tmp_path / "var" / "admin-token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        anonymous = await httpx.AsyncClient(base_url=up.url).get("/api/workers")
        assert anonymous.status_code == 401
        async with (
            httpx.AsyncClient(base_url=up.url, headers=auth) as client,
            open_stream(up.url, headers=auth) as stream,
        ):
            await stream.next()
            while len((await client.get("/api/workers")).json()["items"]) < 5:
                await stream.until(lambda e: e.type == "worker.created", timeout=30)
    finally:
        code, _ = up.stop(signal.SIGINT)
    assert code == 0, up.output()[-2000:]
    assert "api stopped" in up.output() and "worker stopped" in up.output()
