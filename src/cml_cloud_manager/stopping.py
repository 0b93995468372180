"""Ending background tasks at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Collection


async def finish(tasks: Collection[asyncio.Task[object]], grace: float) -> list[asyncio.Task[object]]:
    """Wait up to `grace` seconds for tasks already told to stop, then cancel the rest and wait for them.
    Returns the tasks that had to be cancelled. Telling before cancelling matters: a task cancelled inside a
    SQLite transaction can leave the database's write lock held until the process exits."""
    if not tasks:
        return []
    _, late = await asyncio.wait(tasks, timeout=grace)
    for task in late:
        task.cancel()
    if late:
        await asyncio.wait(late)
    return list(late)
