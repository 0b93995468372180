"""The scheduler against a real database: claims, takeovers, timeouts."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select, update

from cml_cloud_manager.config import Settings
from cml_cloud_manager.jobs.context import Context, Job, Report
from cml_cloud_manager.jobs.integrations import build_integrations
from cml_cloud_manager.jobs.scheduler import Scheduler
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import EventRow, JobRunRow
from cml_cloud_manager.system import service as system_settings


def context(db: Database, settings: Settings, name: str) -> Context:
    return Context(db=db, settings=settings, integrations=build_integrations(settings), process_id=name)


async def runs(db: Database, job: str = "housekeeping") -> list[JobRunRow]:
    async with db.session(write=False) as session:
        return list((await session.scalars(select(JobRunRow).where(JobRunRow.job_name == job))).all())


async def test_two_schedulers_run_each_tick_once(db: Database, settings: Settings) -> None:
    calls: list[str] = []
    done = asyncio.Event()

    def job_for(name: str) -> Job:
        async def count(ctx: Context) -> Report:
            calls.append(name)
            if len(calls) >= 4:
                done.set()
            return Report()

        return Job("housekeeping", count, "test")

    async with db.session() as session:
        await system_settings.update(session, {"jobs.housekeeping.interval_seconds": 1.0}, actor="test")
    stop = asyncio.Event()
    a = Scheduler(context(db, settings, "a"), [job_for("a")], overrides=system_settings.get_all)
    b = Scheduler(context(db, settings, "b"), [job_for("b")], overrides=system_settings.get_all)
    tasks = [asyncio.create_task(a.run(stop)), asyncio.create_task(b.run(stop))]
    await asyncio.wait_for(done.wait(), 15)
    stop.set()
    await asyncio.gather(*tasks)
    await asyncio.gather(a.drain(2), b.drain(2))

    rows = await runs(db)
    ticks = [row.scheduled_at for row in rows]
    assert len(ticks) == len(set(ticks)) == len(calls)
    assert all(row.outcome == "success" for row in rows)


async def test_lapsed_claim_is_taken_over_and_rerun(db: Database, settings: Settings) -> None:
    ran = asyncio.Event()

    async def job(ctx: Context) -> Report:
        ran.set()
        return Report()

    dead = Scheduler(
        context(db, settings, "dead"), [Job("housekeeping", job, "test")], overrides=system_settings.get_all
    )
    async with db.session() as session:
        now = await db.now(session)
    tick = dead.plans["housekeeping"].tick(now)
    run_id = await dead._claim("housekeeping", tick, dead.plans["housekeeping"], trigger="schedule")
    assert run_id is not None
    # The claimer "dies": its lease lapses without renewal.
    async with db.session() as session:
        await session.execute(
            update(JobRunRow).where(JobRunRow.id == run_id).values(lease_expires_at=now - timedelta(seconds=1))
        )
    heir = Scheduler(
        context(db, settings, "heir"), [Job("housekeeping", job, "test")], overrides=system_settings.get_all
    )
    await heir.refresh_plans()
    await heir._take_over_lapsed()
    await asyncio.wait_for(ran.wait(), 5)
    await heir.drain(5)

    [row] = await runs(db)
    assert (row.id, row.claimed_by, row.attempts, row.outcome) == (run_id, "heir", 2, "success")


async def test_run_past_its_timeout_is_recorded_as_timeout(db: Database, settings: Settings) -> None:
    never = asyncio.Event()

    async def hang(ctx: Context) -> Report:
        await never.wait()
        return Report()

    async with db.session() as session:
        await system_settings.update(session, {"jobs.housekeeping.interval_seconds": 1.0}, actor="test")
    scheduler = Scheduler(
        context(db, settings, "s"), [Job("housekeeping", hang, "test")], overrides=system_settings.get_all
    )
    await scheduler.refresh_plans()
    result = await scheduler.run_now("housekeeping")
    assert result.outcome == "timeout"
    assert "did not finish within 0.9s" in result.error
    async with db.session(write=False) as session:
        event = (await session.scalars(select(EventRow).where(EventRow.type == "job.run.completed"))).one()
    assert event.data["outcome"] == "timeout"


async def test_failure_is_recorded_with_its_reason(db: Database, settings: Settings) -> None:
    async def boom(ctx: Context) -> Report:
        raise RuntimeError("CML host exploded")

    scheduler = Scheduler(
        context(db, settings, "s"), [Job("housekeeping", boom, "test")], overrides=system_settings.get_all
    )
    result = await scheduler.run_now("housekeeping")
    assert result.outcome == "failure"
    [row] = await runs(db)
    assert row.error == "RuntimeError: CML host exploded"


async def test_interrupted_run_releases_its_claim(db: Database, settings: Settings) -> None:
    started = asyncio.Event()

    async def slow(ctx: Context) -> Report:
        started.set()
        await asyncio.Event().wait()
        return Report()

    scheduler = Scheduler(
        context(db, settings, "s"), [Job("housekeeping", slow, "test")], overrides=system_settings.get_all
    )
    run = asyncio.create_task(scheduler.run_now("housekeeping"))
    await started.wait()
    await scheduler.drain(0.1)
    run.cancel()
    [row] = await runs(db)
    async with db.session(write=False) as session:
        now = await db.now(session)
    assert row.outcome == "running" and row.lease_expires_at <= now
