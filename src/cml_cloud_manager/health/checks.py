"""Health checks of the database and Redis that answer within a deadline, whatever those components do."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..config import Settings
from ..events.notifier import Notifier
from ..jobs.processes import Fleet, fleet_processes
from ..storage.db import Database

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Outcome(Generic[T]):
    state: str  # "up", "down" or "disabled"
    value: T | None = None
    reason: str | None = None  # why it is down; names no host or address (the public health page shows it)


class Check(Generic[T]):
    """One component's check, answered within a deadline.

    A check that outlives the deadline is not cancelled (a database call cancelled midway can leave its
    connection, or SQLite's lock, in an unknown state): it finishes in the background, and probes arriving
    meanwhile wait on that same check rather than starting another, so a hung component holds one check, not
    one per probe."""

    def __init__(self, name: str, run: Callable[[], Coroutine[Any, Any, T]]) -> None:
        self.name = name
        self._run = run
        self._task: asyncio.Task[T] | None = None
        self._was_up = True

    async def within(self, seconds: float) -> Outcome[T]:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"health-{self.name}")
            self._task.add_done_callback(_retrieved)
        # This probe's check: once it is done, the next probe may start another before this one reads the outcome.
        task = self._task
        done, _ = await asyncio.wait([task], timeout=seconds)
        if not done:
            return self._note(Outcome("down", reason=f"no answer within {seconds:g} s"))
        if task.cancelled():  # closed: the process is stopping
            return Outcome("down", reason="stopping")
        error = task.exception()
        if error is not None:
            return self._note(Outcome("down", reason=f"unreachable ({type(error).__name__})"), error)
        return self._note(Outcome("up", task.result()))

    def _note(self, outcome: Outcome[T], error: BaseException | None = None) -> Outcome[T]:
        """Logs changes only (probes come every few seconds), with the error the public reason leaves out."""
        if outcome.state == "up" and not self._was_up:
            log.info("health check of %s: up again", self.name)
        elif outcome.state == "down" and self._was_up:
            log.warning("health check of %s: %s%s", self.name, outcome.reason, f": {error}" if error else "")
        self._was_up = outcome.state == "up"
        return outcome

    def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()


class HealthChecks:
    """The API process's checks, shared by every probe: the database (read with the fleet's processes) and,
    when configured, Redis; each answers within `HEALTH_TIMEOUT_SECONDS`, both at once."""

    def __init__(self, db: Database, notifier: Notifier, settings: Settings) -> None:
        self.timeout = settings.health_timeout_seconds
        self.database: Check[Fleet] = Check(
            "database", lambda: fleet_processes(db, alive_seconds=settings.worker_alive_seconds)
        )
        self.redis: Check[None] | None = Check("redis", notifier.ping) if notifier.redis is not None else None

    async def run(self) -> tuple[Outcome[Fleet], Outcome[None]]:
        if self.redis is None:
            return await self.database.within(self.timeout), Outcome("disabled")
        database, redis = await asyncio.gather(self.database.within(self.timeout), self.redis.within(self.timeout))
        return database, redis

    def close(self) -> None:
        self.database.close()
        if self.redis is not None:
            self.redis.close()


def _retrieved(task: asyncio.Task[Any]) -> None:
    """Marks a check's failure as seen even when every probe stopped waiting for it (no asyncio warning)."""
    if not task.cancelled():
        task.exception()
