"""Operator writes and the worker's jobs under contention: one lock order, so no deadlock and no failed write.

Issue 16: a write through the API updated a worker row and then took the outbox's advisory lock, while
worker-metrics took the advisory lock with its first event and then updated more worker rows. Here several
clients toggle `PUT /api/workers/{id}/idle` over real HTTP while two worker-metrics-like runs (the real
`store()` of the job, fed observations that change every worker each round) write the same rows.

Also here: what is left for a transaction that still loses a lock conflict — it runs again whole, the API answers
409 (never 503) when it loses every time, and a command is queued again rather than failed.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from cml_cloud_manager.aws.types import Instance, InstanceMetrics, InstanceState
from cml_cloud_manager.config import Settings
from cml_cloud_manager.events import outbox
from cml_cloud_manager.jobs.commands import CommandRunner, enqueue
from cml_cloud_manager.jobs.context import CommandType, Context, Report
from cml_cloud_manager.jobs.integrations import build_integrations
from cml_cloud_manager.storage.db import OUTBOX_LOCK, Database
from cml_cloud_manager.storage.migrate import migrate
from cml_cloud_manager.storage.models import CommandRow, EventRow, WorkerRow
from cml_cloud_manager.storage.retry import SQLITE_LOCKED, contention, retry_on_contention
from cml_cloud_manager.web import problems
from cml_cloud_manager.workers import service
from cml_cloud_manager.workers.events import WorkerUpdated
from cml_cloud_manager.workers.metrics import fingerprint, store
from cml_cloud_manager.workers.schemas import RefreshWorkers
from cml_cloud_manager.workers.sync import Observation

from ..conftest import BACKEND, PG_ADMIN, make_settings, serve_api
from ..events.probe import Probe

WORKERS = 24
CLIENTS = 4
METRICS_RUNS = 2  # worker-metrics and a worker.refresh at the same time
SECONDS = 8.0
# However slow the machine, the run goes on (up to MAX_SECONDS) until this much contention has happened.
MIN_WRITES, MIN_METRICS_RUNS, MAX_SECONDS = 100, 10, 40.0
LAUNCHED = datetime(2026, 1, 1, tzinfo=UTC)


def running_instance(worker_id: int) -> Instance:
    """The EC2 instance of worker number `worker_id`, as an observation finds it."""
    return Instance(
        id=f"i-{worker_id:04d}",
        region="us-east-1",
        name=f"cml-{worker_id:02d}",
        state=InstanceState.RUNNING,
        instance_type="c5.2xlarge",
        image_id="ami-1",
        launch_time=LAUNCHED,
        availability_zone="us-east-1a",
        public_ip=f"198.51.100.{worker_id}",
        private_ip=f"10.0.0.{worker_id}",
        public_dns=None,
        private_dns=None,
        subnet_id=None,
        vpc_id=None,
        key_name=None,
        monitoring_state="disabled",
    )


def _observations(ids: dict[str, int], round_: int) -> dict[str, Observation]:
    """Every worker's CPU moves past the change threshold each round, so each one gets an event."""
    cpu = 10.0 if round_ % 2 else 60.0
    return {
        worker_id: Observation(
            instance=running_instance(n),
            metrics=InstanceMetrics(f"i-{n:04d}", cpu + n / 10, 30.0, datetime.now(UTC)),
        )
        for worker_id, n in ids.items()
    }


async def _deadlocks(name: str) -> int:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        value = await conn.fetchval("SELECT deadlocks FROM pg_stat_database WHERE datname = $1", name)
    finally:
        await conn.close()
    return int(value or 0)


async def _settled_deadlocks(name: str) -> int:
    """Backends report their statistics when they exit: wait until every connection to the database is gone."""
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        for _ in range(100):
            if not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", name):
                break
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    return await _deadlocks(name)


def _contention(outcome: str) -> float:
    """Units of work run again (or given up) after a lock conflict, in this process, whatever the reason."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "database_contention"
        for sample in metric.samples
        if sample.name == "database_contention_total" and sample.labels["outcome"] == outcome
    )


async def test_idle_toggles_and_metrics_runs_never_deadlock(database_url: str) -> None:
    name = make_url(database_url).database
    assert name is not None
    if BACKEND == "postgres":
        # Detect a lock cycle after 50 ms instead of 1 s: the same cycles, found (and counted) sooner.
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            await conn.execute(f"ALTER DATABASE \"{name}\" SET deadlock_timeout = '50ms'")
        finally:
            await conn.close()
    settings = make_settings(database_url)
    db = Database(settings, source="cml-cloud-manager/test-worker")
    await migrate(db)
    ids: dict[str, int] = {}
    async with db.session() as session:
        for n in range(1, WORKERS + 1):
            row = await service.add(
                session,
                service.create_row(name=f"cml-{n:02d}", aws_region="us-east-1", aws_instance_id=f"i-{n:04d}"),
                reason="test",
            )
            await service.set_status(session, row, "running")
            ids[row.id] = n
    before = await _deadlocks(name) if BACKEND == "postgres" else 0
    retried_before = _contention("retried")

    integrations = build_integrations(settings)
    ctx = Context(db=db, settings=settings, integrations=integrations, process_id="test-worker")
    answers: Counter[int] = Counter()
    metrics_runs: Counter[str] = Counter()
    began = time.monotonic()

    def going() -> bool:
        elapsed = time.monotonic() - began
        enough = answers.total() >= MIN_WRITES and metrics_runs.total() >= MIN_METRICS_RUNS
        return elapsed < SECONDS or (not enough and elapsed < MAX_SECONDS)

    async def toggle(api: httpx.AsyncClient, seed: int) -> None:
        rng = random.Random(seed)
        worker_ids = list(ids)
        while going():
            worker_id = rng.choice(worker_ids)
            response = await api.put(f"/api/workers/{worker_id}/idle", json={"enabled": rng.random() < 0.5})
            answers[response.status_code] += 1

    async def collect(offset: int) -> None:
        round_ = offset
        while going():
            # As the job does: read the workers, observe (here: made up), then store in batches.
            async with db.session(write=False) as session:
                seen = {row.id: fingerprint(row) for row in (await session.scalars(select(WorkerRow))).all()}
            try:
                await store(ctx, _observations(ids, round_), seen)
                metrics_runs["ok"] += 1
            except Exception as exc:
                metrics_runs[f"failed: {type(exc).__name__}"] += 1
            round_ += 1

    try:
        async with serve_api(settings) as api:
            await asyncio.gather(
                *(toggle(api, seed) for seed in range(CLIENTS)),
                *(collect(offset) for offset in range(METRICS_RUNS)),
            )
    finally:
        await integrations.aclose()
        await db.dispose()

    deadlocks = await _settled_deadlocks(name) - before if BACKEND == "postgres" else 0
    retried = _contention("retried") - retried_before
    report = f"answers {dict(answers)}, metrics runs {dict(metrics_runs)}, deadlocks {deadlocks}, retried {retried}"
    print(report)
    assert answers.total() >= MIN_WRITES and metrics_runs.total() >= MIN_METRICS_RUNS, report  # it happened
    assert set(answers) == {200}, report
    assert set(metrics_runs) == {"ok"}, report
    assert deadlocks == 0, report


async def test_an_event_takes_no_lock_until_commit(db: Database) -> None:
    """A transaction that appended an event and goes on updating rows does not hold the outbox lock yet."""
    async with db.session() as session:
        row = await service.add(session, service.create_row(name="w", aws_region="us-east-1"), reason="test")
    async with db.session() as session:
        worker = await service.get(session, row.id)
        await service.touch(session, worker, WorkerUpdated.of(worker, idle_detection_enabled=False))
        worker.idle_detection_enabled = False
        await session.flush()  # the row is written (and locked) after the event was appended
        if BACKEND == "postgres":
            async with db.session() as other:
                free = await other.scalar(select(func.pg_try_advisory_xact_lock(OUTBOX_LOCK)))
            assert free, "the outbox lock was taken before the transaction's last row write"
        # Nor is the event inserted yet: only "worker.created", committed before, is there.
        assert await session.scalar(select(func.count()).select_from(EventRow).where(EventRow.worker_id == row.id)) == 1
    async with db.session(write=False) as session:
        types = (await session.scalars(select(EventRow.type).order_by(EventRow.seq))).all()
    assert types == ["worker.created", "worker.updated"]


async def test_an_event_needs_a_write_transaction(db: Database) -> None:
    async with db.session(write=False) as session:
        with pytest.raises(RuntimeError, match="write transaction"):
            await outbox.append(session, Probe(), type="test.event")


async def test_a_deadlocked_unit_of_work_runs_again_and_succeeds(db: Database) -> None:
    """Two transactions update two rows in opposite orders: PostgreSQL aborts one, which then runs again."""
    if BACKEND != "postgres":
        pytest.skip("SQLite's BEGIN IMMEDIATE admits one writer at a time: there is no lock order to get wrong")
    async with db.session() as session:
        a = await service.add(session, service.create_row(name="a", aws_region="us-east-1"), reason="test")
        b = await service.add(session, service.create_row(name="b", aws_region="us-east-1"), reason="test")
    first_locked = {a.id: asyncio.Event(), b.id: asyncio.Event()}
    runs: Counter[str] = Counter()
    retried = REGISTRY.get_sample_value("database_contention_total", {"reason": "deadlock", "outcome": "retried"})

    @retry_on_contention
    async def bump(first: str, second: str) -> None:
        runs[first] += 1
        async with db.session() as session:
            await session.execute(text("SET LOCAL deadlock_timeout = '50ms'"))
            for worker_id in (first, second):
                # FOR UPDATE: a retry must not read a row the other transaction changed but has not committed yet
                # (under load it can still be committing), or its increment would be lost.
                row = await service.get(session, worker_id, for_update=True)
                row.auto_pauses += 1
                await service.touch(session, row, WorkerUpdated.of(row, status_checks=f"bumped {row.auto_pauses}"))
                await session.flush()
                if worker_id == first and runs[first] == 1:  # the first time, wait until both hold a row
                    first_locked[first].set()
                    await asyncio.wait_for(first_locked[second].wait(), 5)

    await asyncio.wait_for(asyncio.gather(bump(a.id, b.id), bump(b.id, a.id)), 30)
    assert sorted(runs.values()) == [1, 2]
    after = REGISTRY.get_sample_value("database_contention_total", {"reason": "deadlock", "outcome": "retried"})
    assert (after or 0) - (retried or 0) == 1
    async with db.session(write=False) as session:
        pauses = (await session.scalars(select(WorkerRow.auto_pauses).order_by(WorkerRow.name))).all()
        updates = await session.scalar(
            select(func.count()).select_from(EventRow).where(EventRow.type == "worker.updated")
        )
    assert pauses == [2, 2] and updates == 4


def test_sqlite_busy_counts_as_contention(tmp_path: Path) -> None:
    path = str(tmp_path / "busy.db")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    waiter = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError) as caught:
            waiter.execute("BEGIN IMMEDIATE")
        assert contention(caught.value) == SQLITE_LOCKED
        assert contention(OperationalError("BEGIN IMMEDIATE", {}, caught.value)) == SQLITE_LOCKED
    finally:
        waiter.close()
        holder.close()
    assert contention(OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))) is None


def _deadlock() -> OperationalError:
    return OperationalError("UPDATE workers SET ...", {}, asyncpg.exceptions.DeadlockDetectedError("deadlock detected"))


async def test_a_write_that_keeps_losing_is_a_conflict_never_database_unavailable() -> None:
    app = FastAPI()
    problems.install(app)

    @app.put("/lost")
    async def lost() -> None:
        raise _deadlock()

    @app.put("/down")
    async def down() -> None:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client:
        lost_answer, down_answer = await client.put("/lost"), await client.put("/down")
    assert lost_answer.status_code == 409 and lost_answer.json()["type"].endswith(":write_conflict")
    assert down_answer.status_code == 503 and down_answer.json()["type"].endswith(":database_unavailable")


class Refreshed(Report):
    refreshed: bool


async def test_a_command_that_lost_a_lock_conflict_is_queued_again(db: Database, settings: Settings) -> None:
    attempts: Counter[str] = Counter()

    async def refresh(ctx: Context, payload: RefreshWorkers) -> Report:
        [name] = payload.worker_ids
        attempts[name] += 1
        if name == "always" or attempts[name] == 1:
            raise _deadlock()
        return Refreshed(refreshed=True)

    async with db.session() as session:
        once = await enqueue(session, RefreshWorkers(worker_ids=["once"]))
        always = await enqueue(session, RefreshWorkers(worker_ids=["always"]))
    ctx = Context(db=db, settings=settings, integrations=build_integrations(settings), process_id="w1")
    runner = CommandRunner(ctx, [CommandType(RefreshWorkers, refresh, "")])
    try:
        # Each lost attempt is claimed again until one succeeds or none is left: 2 for one, all for the other.
        assert await runner.run_burst() == 2 + settings.command_max_attempts
    finally:
        await ctx.integrations.aclose()
    done = {row.id: await _stored(db, row.id) for row in (once, always)}
    assert (done[once.id].status, done[once.id].attempts, done[once.id].result) == ("succeeded", 2, {"refreshed": True})
    # Bounded: a command that never gets through fails after COMMAND_MAX_ATTEMPTS.
    assert (done[always.id].status, done[always.id].attempts) == ("failed", settings.command_max_attempts)
    assert attempts["always"] == settings.command_max_attempts
    async with db.session(write=False) as session:
        events = (await session.scalars(select(EventRow).order_by(EventRow.seq))).all()
    once_events = [(e.type, e.data.get("attempt")) for e in events if e.data.get("command_id") == once.id]
    assert once_events == [
        ("command.queued", 1),
        ("command.started", 1),
        ("command.queued", 2),
        ("command.started", 2),
        ("command.completed", None),
    ]


async def _stored(db: Database, command_id: str) -> CommandRow:
    async with db.session(write=False) as session:
        row = await session.get(CommandRow, command_id)
    assert row is not None
    return row
