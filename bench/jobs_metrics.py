"""`make bench-jobs`: time the worker-metrics job over N simulated workers (default 1,000).

The AWS emulator (moto server) and the CML simulator run as separate processes, as remote systems would; the job
runs in this process exactly as the worker runs it. Prints the median of several runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cml_cloud_manager.jobs.context import Context
from cml_cloud_manager.jobs.integrations import build_integrations
from cml_cloud_manager.sandbox.run import sandbox_env
from cml_cloud_manager.sandbox.seed import REGION
from cml_cloud_manager.sandbox.services import aws_env, start_cml_simulator, start_moto
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.migrate import migrate
from cml_cloud_manager.workers.imports import import_matching
from cml_cloud_manager.workers.metrics import refresh_workers

from .fleet import sandbox_settings, seed


async def run(count: int, runs: int, database_url: str) -> list[float]:
    log_dir = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    aws, cml = start_moto(log_dir), start_cml_simulator(log_dir)
    try:
        began = time.perf_counter()
        seed(aws.url, count)
        print(f"seeded {count} instances in {time.perf_counter() - began:.1f}s", flush=True)
        os.environ.update(aws_env())
        env = sandbox_env(aws.url, cml.url)
        settings = sandbox_settings(database_url, env)
        db = Database(settings)
        await migrate(db)
        integrations = build_integrations(settings)
        ctx = Context(db=db, settings=settings, integrations=integrations, process_id="bench")
        began = time.perf_counter()
        imported = (await import_matching(ctx, [REGION], "cml2-*", reason="bench")).model_dump()
        print(f"imported {len(imported['imported'])} workers in {time.perf_counter() - began:.1f}s", flush=True)
        durations = []
        for index in range(runs):
            began = time.perf_counter()
            summary = (await refresh_workers(ctx)).model_dump()
            durations.append(time.perf_counter() - began)
            print(f"run {index + 1}: {durations[-1]:.2f}s {summary}", flush=True)
        await integrations.aclose()
        await db.dispose()
        return durations
    finally:
        cml.stop()
        aws.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1000, help="simulated workers (default 1000)")
    parser.add_argument("--runs", type=int, default=3, help="job runs to time (default 3)")
    parser.add_argument("--database-url", default="", help="default: a fresh SQLite file")
    args = parser.parse_args()
    url = args.database_url or f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='bench-db-')}/bench.db"
    durations = asyncio.run(run(args.workers, args.runs, url))
    median = statistics.median(durations)
    verdict = "meets" if median <= 10 else "MISSES"
    print(
        f"worker-metrics over {args.workers} workers: median {median:.2f}s of {args.runs} runs "
        f"({os.cpu_count()} cores; target <= 10 s: {verdict})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
