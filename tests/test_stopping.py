"""Background loops end when told to, so shutdown never interrupts a transaction."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from cml_cloud_manager.jobs.processes import forget, keep_beating
from cml_cloud_manager.stopping import finish
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import ProcessRow


async def test_a_stopped_heartbeat_leaves_the_database_writable(db: Database) -> None:
    # Cancelling a heartbeat mid-transaction left SQLite's write lock held, so the API's last write hung at
    # shutdown. Stop at many points of the loop (a varying number of event-loop turns after the start).
    for turns in range(40):
        stop = asyncio.Event()
        beating = asyncio.create_task(keep_beating(db, stop, process_id="api@test", role="api", every=0))
        for _ in range(turns):
            await asyncio.sleep(0)
        stop.set()
        assert await finish([beating], grace=30) == [], "the heartbeat had to be cancelled"
        async with asyncio.timeout(5), db.session() as session:
            await forget(session, "api@test")
    async with db.session(write=False) as session:
        assert (await session.scalars(select(ProcessRow))).all() == []


async def test_finish_cancels_what_does_not_stop_within_the_grace() -> None:
    stop = asyncio.Event()

    async def obedient() -> None:
        await stop.wait()

    stubborn = asyncio.create_task(asyncio.Event().wait(), name="stubborn")
    task = asyncio.create_task(obedient())
    stop.set()
    late = await finish([task, stubborn], grace=0.2)
    assert late == [stubborn] and stubborn.cancelled() and task.done() and not task.cancelled()
