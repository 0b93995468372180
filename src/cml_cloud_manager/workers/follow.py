"""Following an instance to the state a command asked for.

Without this, a stop shows `stopping` until the next worker-metrics run, minutes later. The command that changed
the state instead observes the worker (EC2, then CML once the instance runs) with backoff, storing every transition
as it is seen, so events announce each one as it happens; a worker that comes up is followed until its CML answers,
so `service_status` and `cml_ready` settle too. Observations go through worker-metrics' own `refresh_workers`: a
change stored meanwhile by another command or job is never overwritten with an older observation.
"""

from __future__ import annotations

import asyncio

from ..jobs.context import Context
from ..storage.models import WorkerRow
from . import service
from .domain import ServiceStatus, WorkerStatus
from .metrics import refresh_workers
from .schemas import Followed

# The first look is immediate (an emulator, or an instance that was already there, needs no wait); then 1 s,
# doubling up to 15 s: about 8 looks over a typical minute-long stop, no more than 4 a minute after that.
FIRST_DELAY = 1.0
MAX_DELAY = 15.0


def settled(row: WorkerRow, goal: WorkerStatus) -> bool:
    """Whether following can end: the goal is reached (for `running`, with CML answering or refusing us for
    good), or the worker reached a status it never leaves by itself."""
    if row.status == goal:
        return goal != WorkerStatus.RUNNING or row.service_status in (ServiceStatus.AVAILABLE, ServiceStatus.ERROR)
    return row.status in (WorkerStatus.TERMINATED, WorkerStatus.FAILED)


async def follow(ctx: Context, worker_id: str, goal: WorkerStatus) -> Followed:
    """Observe the worker until `settled` or STATE_FOLLOW_TIMEOUT_SECONDS pass; after a timeout worker-metrics
    keeps observing it as usual. Returns where it got to."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ctx.settings.state_follow_timeout_seconds
    delay = FIRST_DELAY
    reported = ""
    while True:
        # Hosts that failed lately are asked anyway: this one is expected to come up any moment.
        await refresh_workers(ctx, [worker_id], cml_backoff=False)
        async with ctx.db.session(write=False) as session:
            row = await service.get(session, worker_id)
        where = f"{row.status}, CML {row.service_status}" if row.status == WorkerStatus.RUNNING else row.status
        if where != reported:
            await ctx.progress(f"Instance {row.aws_instance_id} is {where}")
            reported = where
        done = settled(row, goal)
        left = deadline - loop.time()
        if done or left <= 0:
            if not done:
                await ctx.progress(
                    f"Instance {row.aws_instance_id} is still {where} after "
                    f"{ctx.settings.state_follow_timeout_seconds:g}s; worker-metrics keeps watching it"
                )
            if goal == WorkerStatus.RUNNING:
                return Followed(status=row.status, settled=done, service_status=row.service_status)
            return Followed(status=row.status, settled=done)
        await ctx.pause(min(delay, left))
        delay = min(delay * 2, MAX_DELAY)
