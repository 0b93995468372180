"""The `worker-metrics` job: EC2 state, CloudWatch and CML for every worker, with bounded concurrency.

AWS is asked once per region for all workers (describe + status + one batched CloudWatch query); CML hosts are
read concurrently under a semaphore, each call bounded by CML_TIMEOUT, so one slow host never delays others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm.attributes import flag_modified

from ..aws import cloudwatch, ec2
from ..cml.errors import CMLAuthFailed, CMLError
from ..errors import AppError
from ..jobs.context import Context
from ..jobs.integrations import Integrations
from ..storage.models import WorkerRow
from ..storage.retry import retry_on_contention
from . import service
from .domain import WorkerStatus
from .schemas import Observed, RunSeconds
from .sync import CmlObservation, Observation, apply

log = logging.getLogger(__name__)
WRITE_BATCH = 100
# What a run writes to nearly every worker. Marked as written on every row, even when a value is unchanged, so
# each batch's rows update the same columns, which SQLAlchemy sends as one executemany (one round trip on
# asyncpg) instead of one statement per distinct set of changed columns: over 1,000 workers, ~250 round trips
# per run became ~10. The row is rewritten anyway: `metrics_at` changes every run.
STEADY_COLUMNS = ("metrics_at", "cpu_percent", "memory_percent", "disk_percent", "labs_count")


async def read_cml(integrations: Integrations, worker: WorkerRow, deadline: float | None) -> CmlObservation:
    try:
        client = integrations.cml.client(worker)
        # One after another on one kept-alive connection: with hundreds of hosts in flight, parallel calls per
        # host would only open more connections, and connection setup is most of the client's cost.
        async with asyncio.timeout_at(deadline):
            info = await client.system_information()
            health = await client.system_health()
            stats = await client.system_stats()
            licensing = await client.licensing()
            labs = await client.list_labs()
        return CmlObservation(info, health, stats, licensing, len(labs))
    except CMLAuthFailed as exc:
        return CmlObservation(error=exc.message, auth_failed=True)
    except CMLError as exc:
        return CmlObservation(error=exc.message)
    except TimeoutError:
        return CmlObservation(error="CML did not answer within this run's time budget")


async def observe_region(
    integrations: Integrations,
    region: str,
    workers: list[WorkerRow],
    cml_slots: asyncio.Semaphore,
    deadline: float | None = None,
    *,
    cml_backoff: bool = True,
) -> dict[str, Observation]:
    """Everything known about these workers now; a worker whose instance is gone is marked vanished.

    CML hosts believed running are read at their known address while AWS is asked, so a run costs the slower of
    the two rather than their sum (at 1,000 workers each takes seconds). A read the observation contradicts
    (the instance is not running, or its address changed) is dropped, and redone at the new address. Without
    `cml_backoff`, hosts that failed lately are read anyway (a command waiting for one to come up)."""
    pool = integrations.cml

    async def read(worker: WorkerRow) -> CmlObservation:
        if cml_backoff and pool.retry_in(worker.id) > 0:
            return CmlObservation(skipped=True)
        async with cml_slots:
            return await read_cml(integrations, worker, deadline)

    early: dict[str, tuple[str, asyncio.Task[CmlObservation]]] = {}
    for worker in workers:
        # Without an address yet, a host is read after the observation, if at all.
        url = _url_or_none(integrations, worker) if worker.status == WorkerStatus.RUNNING else None
        if url is not None:
            early[worker.id] = (url, asyncio.create_task(read(worker)))
    try:
        return await _observe(integrations, region, workers, read, early)
    finally:
        for _, task in early.values():
            task.cancel()
        await asyncio.gather(*(task for _, task in early.values()), return_exceptions=True)


async def _observe(
    integrations: Integrations,
    region: str,
    workers: list[WorkerRow],
    read: Callable[[WorkerRow], Awaitable[CmlObservation]],
    early: dict[str, tuple[str, asyncio.Task[CmlObservation]]],
) -> dict[str, Observation]:
    ids = [w.aws_instance_id for w in workers if w.aws_instance_id]
    aws = integrations.aws
    instances, statuses, metrics = await asyncio.gather(
        ec2.describe_instances(aws, region, instance_ids=ids, missing_ok=True),
        ec2.describe_instance_status(aws, region, ids, missing_ok=True),
        cloudwatch.get_latest_metrics(aws, region, ids),
    )
    # AMI names change never, so only workers that lack one cost a DescribeImages call.
    unnamed = {i.image_id for i in instances} & {w.ami_id for w in workers if not w.ami_name and w.ami_id}
    ami_names = await _ami_names(integrations, region, sorted(unnamed)) if unnamed else {}
    by_id = {i.id: i for i in instances}
    status_by_id = {s.instance_id: s for s in statuses}
    observations: dict[str, Observation] = {}
    for worker in workers:
        iid = worker.aws_instance_id or ""
        observations[worker.id] = Observation(
            instance=by_id.get(iid),
            status=status_by_id.get(iid),
            metrics=metrics.get(iid),
            vanished=iid not in by_id,
            ami_name=ami_names.get(worker.ami_id, ""),
        )

    async def with_cml(worker: WorkerRow) -> None:
        obs = observations[worker.id]
        url, guess = early.pop(worker.id, ("", None))
        instance = obs.instance
        running = instance if instance is not None and instance.state.value == WorkerStatus.RUNNING else None
        if running is not None:
            # The address may have changed with this very observation (a restarted instance gets a new IP).
            worker.public_ip, worker.private_ip = running.public_ip, running.private_ip
        if guess is not None and not (running is not None and url == _url_or_none(integrations, worker)):
            guess.cancel()  # a host that is gone or moved: the read may be waiting on it, holding a slot
            guess = None
        if running is None:
            return
        obs.cml = await guess if guess is not None else await read(worker)
        if not obs.cml.skipped:
            integrations.cml.record(worker.id, ok=not obs.cml.error)

    await asyncio.gather(*(with_cml(worker) for worker in workers))
    return observations


def _url_or_none(integrations: Integrations, worker: WorkerRow) -> str | None:
    try:
        return integrations.cml.url_for(worker)
    except CMLError:
        return None


async def _ami_names(integrations: Integrations, region: str, image_ids: list[str]) -> dict[str, str]:
    try:
        images = await ec2.describe_images(integrations.aws, region, image_ids=image_ids)
    except AppError as exc:  # a deregistered AMI only costs us its name
        log.info("worker-metrics: AMI names in %s unavailable: %s", region, exc)
        return {}
    return {image.id: image.name or "" for image in images}


def by_region(workers: Iterable[WorkerRow]) -> dict[str, list[WorkerRow]]:
    groups: dict[str, list[WorkerRow]] = defaultdict(list)
    for worker in workers:
        if worker.aws_instance_id:
            groups[worker.aws_region].append(worker)
    return groups


async def refresh_workers(ctx: Context, worker_ids: list[str] | None = None, *, cml_backoff: bool = True) -> Observed:
    """Observe and store. Regions are independent: a failing region is reported, the others still update."""
    async with ctx.db.session(write=False) as session:
        query = select(WorkerRow).where(WorkerRow.status != WorkerStatus.TERMINATED)
        if worker_ids is not None:
            query = query.where(WorkerRow.id.in_(worker_ids))
        workers = list((await session.scalars(query)).all())
    seen = {worker.id: fingerprint(worker) for worker in workers}
    began = time.monotonic()
    cml_slots = asyncio.Semaphore(ctx.settings.metrics_concurrency)
    groups = by_region(workers)
    results = await asyncio.gather(
        *(
            observe_region(ctx.integrations, r, ws, cml_slots, ctx.host_deadline(), cml_backoff=cml_backoff)
            for r, ws in groups.items()
        ),
        return_exceptions=True,
    )
    observations: dict[str, Observation] = {}
    failed_regions: dict[str, str] = {}
    for region, result in zip(groups, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, AppError | OSError):
                raise result
            failed_regions[region] = str(result)
            log.warning("worker-metrics: region %s failed: %s", region, result)
        else:
            observations.update(result)
    observed = time.monotonic()
    changed, superseded = await store(ctx, observations, seen)
    unreachable = sum(1 for o in observations.values() if o.cml is not None and o.cml.error)
    backing_off = sum(1 for o in observations.values() if o.cml is not None and o.cml.skipped)
    return Observed(
        workers=len(observations),
        changed=changed,
        cml_unreachable=unreachable,
        cml_backing_off=backing_off,
        superseded=superseded,
        failed_regions=failed_regions,
        # Where a run's time went (AWS and CML are asked concurrently; storing follows): on a busy host, which
        # part waits for the CPU or the database.
        seconds=RunSeconds(observe=round(observed - began, 2), store=round(time.monotonic() - observed, 2)),
    )


def fingerprint(row: WorkerRow) -> tuple[object, ...]:
    """What commands and other jobs change on a worker: an observation begun before such a change must not undo it."""
    return (row.status, row.license_status)


async def store(
    ctx: Context, observations: dict[str, Observation], seen: dict[str, tuple[object, ...]]
) -> tuple[int, int]:
    """Write in batches: short transactions keep row locks and SQLite's write lock brief. A worker changed
    since it was read for this run (a stop, a license registered) keeps its change; the next run observes it
    again. Returns (workers changed, observations superseded)."""
    changed = superseded = 0
    ids = list(observations)
    now = datetime.now(UTC)

    @retry_on_contention
    async def write(batch: list[str]) -> tuple[int, int]:
        """One batch, one transaction: run again whole (rows re-read) if it lost a lock conflict."""
        changed = superseded = 0
        written = []
        async with ctx.db.session() as session:
            # Locked, in id order, so two runs over the same workers (worker-metrics and a worker.refresh) lock
            # them in the same order, and a worker removed meanwhile is either gone here or waits for this batch.
            query = select(WorkerRow).where(WorkerRow.id.in_(batch)).order_by(WorkerRow.id).with_for_update()
            for row in (await session.scalars(query)).all():
                if fingerprint(row) != seen[row.id]:
                    superseded += 1
                    log.info("worker-metrics: %s changed during this run; its observation is dropped", row.name)
                    continue
                if await apply(
                    session, row, observations[row.id], threshold=ctx.settings.metrics_change_threshold, now=now
                ):
                    changed += 1
                for name in STEADY_COLUMNS:
                    flag_modified(row, name)
                written.append(row.id)
            if written:  # most of what was written announced no change: the API replicas read these rows again
                await service.observed(session, written)
        return changed, superseded

    for start in range(0, len(ids), WRITE_BATCH):
        batch_changed, batch_superseded = await write(ids[start : start + WRITE_BATCH])
        changed += batch_changed
        superseded += batch_superseded
    return changed, superseded


async def collect_metrics(ctx: Context) -> Observed:
    return await refresh_workers(ctx)
