"""Jobs: worker-metrics duration as the fleet grows, and duplicate scheduled runs across worker replicas.

Durations: one emulator + simulator grows to each fleet size; the job runs in this process exactly as a worker
runs it (PostgreSQL, both cores, nothing pinned), after one untimed run that brings the new workers to a
steady state. Duplicates: three real `worker` processes share one database and race for every tick of two
short-interval jobs; the `job_runs` table then tells whether any tick ran twice or was skipped.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from cml_cloud_manager.aws import cloudwatch, ec2
from cml_cloud_manager.errors import AppError
from cml_cloud_manager.jobs.context import Context
from cml_cloud_manager.jobs.integrations import build_integrations
from cml_cloud_manager.sandbox.seed import REGION
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.migrate import migrate
from cml_cloud_manager.storage.models import WorkerRow
from cml_cloud_manager.workers.metrics import collect_metrics

from .common import REDIS, ScratchDatabase
from .fleet import Fleet, import_fleet
from .procs import AppProcess

# Tick intervals for the duplicate check: short, so a minute holds many ticks, and each longer than a run.
RACED = {"worker-metrics": 5, "housekeeping": 2}


@dataclass
class JobsPlan:
    sizes: list[int] = field(default_factory=lambda: [100, 1000, 5000])
    runs: int = 3  # timed runs per size (median reported)
    big_runs: int = 2  # above 1,000 workers, where one run takes a minute on 2 cores
    replicas: int = 3
    race_seconds: float = 30


@dataclass
class SizeResult:
    workers: int
    durations: list[float]  # seconds, timed runs
    warmup: float  # the untimed first run over the new workers
    summary: dict[str, object]
    aws: float  # the job's AWS calls (describe, status, CloudWatch; concurrent) timed alone: the emulator's share

    @property
    def median(self) -> float:
        return statistics.median(self.durations)


@dataclass
class RaceResult:
    replicas: int
    seconds: float
    ticks: dict[str, int]  # distinct scheduled ticks per job
    duplicates: int  # (job, tick) pairs claimed more than once
    missed: dict[str, int]  # ticks absent between a job's first and last in the window
    by_process: dict[str, int]  # runs per claiming process
    outcomes: dict[str, int]


@dataclass
class JobsResult:
    plan: JobsPlan
    sizes: list[SizeResult] = field(default_factory=list)
    race: RaceResult | None = None
    failed: dict[int, str] = field(default_factory=dict)  # fleet size -> why it could not be measured


class SizeFailed(Exception):
    """A fleet size could not be timed (the emulator gave up under it); larger sizes are not tried."""


async def time_size(ctx: Context, fleet: Fleet, size: int, runs: int) -> SizeResult:
    fleet.grow(size)
    began = time.perf_counter()
    await import_fleet(ctx)  # imports the new instances and runs the job once over everything
    warmup = time.perf_counter() - began
    durations, summary = [], {}
    for index in range(runs):
        began = time.perf_counter()
        summary = (await collect_metrics(ctx)).model_dump()
        durations.append(time.perf_counter() - began)
        print(f"    {size:,} workers, run {index + 1}: {durations[-1]:.2f}s {summary}", flush=True)
        if summary["failed_regions"]:  # a run that lost its region is fast for the wrong reason
            raise SizeFailed(f"run {index + 1} lost its region: {summary['failed_regions']}")
    try:
        aws = await time_aws(ctx)
    except AppError as exc:
        raise SizeFailed(f"the AWS calls alone failed: {exc}") from exc
    print(f"    {size:,} workers: the same AWS calls alone take {aws:.2f}s", flush=True)
    return SizeResult(size, durations, warmup, summary, aws)


async def time_aws(ctx: Context) -> float:
    """The three AWS calls a run makes per region, concurrently as the job makes them, without the job around
    them: how much of a run is the emulator answering (moto is far slower than EC2 and CloudWatch at scale)."""
    async with ctx.db.session(write=False) as session:
        found = await session.scalars(select(WorkerRow.aws_instance_id))
        ids: list[str] = [instance_id for instance_id in found if instance_id]
    aws, region = ctx.integrations.aws, REGION
    began = time.perf_counter()
    await asyncio.gather(
        ec2.describe_instances(aws, region, instance_ids=ids, missing_ok=True),
        ec2.describe_instance_status(aws, region, ids, missing_ok=True),
        cloudwatch.get_latest_metrics(aws, region, ids),
    )
    return time.perf_counter() - began


def race(fleet: Fleet, db: ScratchDatabase, plan: JobsPlan, log_dir: Path) -> RaceResult:
    """`replicas` workers race for every tick for `race_seconds`, then the job_runs table is read."""
    env = {
        **fleet.app_env(),
        "DATABASE_URL": db.url,
        "REDIS_URL": REDIS,
        "REDIS_PREFIX": db.name,
        "LABS_REFRESH_ENABLED": "false",
        "AUTO_IMPORT_ENABLED": "false",
        "IDLE_DETECTION_ENABLED": "false",
    }
    for job, interval in RACED.items():
        env[f"{job.replace('-', '_').upper()}_INTERVAL"] = str(interval)
    workers = [AppProcess.start(f"worker-{i + 1}", ["worker"], env, log_dir) for i in range(plan.replicas)]
    began = datetime.now().astimezone()
    try:
        time.sleep(plan.race_seconds)
    finally:
        for worker in workers:
            worker.stop()
    return asyncio.run(count_runs(db, began, plan))


async def count_runs(db: ScratchDatabase, began: datetime, plan: JobsPlan) -> RaceResult:
    rows = await db.fetch(
        "SELECT job_name, scheduled_at, claimed_by, outcome FROM job_runs "
        "WHERE trigger = 'schedule' AND started_at >= $1 ORDER BY scheduled_at",
        began,
    )
    seen: dict[tuple[str, datetime], int] = {}
    by_process: dict[str, int] = {}
    outcomes: dict[str, int] = {}
    for row in rows:
        key = (row["job_name"], row["scheduled_at"])
        seen[key] = seen.get(key, 0) + 1
        by_process[row["claimed_by"]] = by_process.get(row["claimed_by"], 0) + 1
        outcomes[row["outcome"]] = outcomes.get(row["outcome"], 0) + 1
    ticks: dict[str, int] = {}
    missed: dict[str, int] = {}
    for job, interval in RACED.items():
        times = sorted(t.timestamp() for (name, t) in seen if name == job)
        ticks[job] = len(times)
        expected = round((times[-1] - times[0]) / interval) + 1 if times else 0
        missed[job] = expected - len(times)
    duplicates = sum(1 for count in seen.values() if count > 1)
    return RaceResult(plan.replicas, plan.race_seconds, ticks, duplicates, missed, by_process, outcomes)


def run_jobs(plan: JobsPlan, log_dir: Path | None = None) -> JobsResult:
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    result = JobsResult(plan)
    db = asyncio.run(ScratchDatabase.create("bench_jobs"))
    try:
        with Fleet(log_dir) as fleet:
            settings = fleet.settings(db.url)

            async def sizes(which: list[int]) -> None:
                database = Database(settings)
                integrations = build_integrations(settings)
                try:
                    await migrate(database)
                    ctx = Context(db=database, settings=settings, integrations=integrations, process_id="bench")
                    for size in which:
                        runs = plan.runs if size <= 1000 else plan.big_runs
                        try:
                            result.sizes.append(await time_size(ctx, fleet, size, runs))
                        except (SizeFailed, AppError) as exc:
                            result.failed[size] = str(exc)
                            print(f"    {size:,} workers: not measured: {exc}", flush=True)
                            return
                finally:
                    await integrations.aclose()
                    await database.dispose()

            # The race needs runs shorter than their interval, so it runs while the fleet is smallest.
            asyncio.run(sizes(plan.sizes[:1]))
            print(
                f"  duplicates: {plan.replicas} worker processes, {plan.race_seconds:.0f}s, intervals {RACED}",
                flush=True,
            )
            result.race = race(fleet, db, plan, log_dir)
            asyncio.run(sizes(plan.sizes[1:]))
    finally:
        asyncio.run(db.drop())
    return result
