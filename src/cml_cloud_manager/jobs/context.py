"""What every job and command receives: a typed context, like arq's `ctx`, instead of globals."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ..config import Settings
from ..integrations import Integrations
from ..storage.db import Database

JobFunc = Callable[["Context"], Awaitable[dict[str, Any] | None]]
CommandFunc = Callable[["Context", dict[str, Any]], Awaitable[dict[str, Any] | None]]


async def _no_progress(message: str) -> None:
    return None


@dataclass(frozen=True)
class Context:
    db: Database
    settings: Settings
    integrations: Integrations
    process_id: str
    command_id: str | None = None
    progress: Callable[[str], Awaitable[None]] = field(default=_no_progress)
    # Event-loop time by which the current job run must end (None: no limit, e.g. a command).
    deadline: float | None = None

    def for_command(self, command_id: str, progress: Callable[[str], Awaitable[None]]) -> Context:
        return replace(self, command_id=command_id, progress=progress)

    def with_deadline(self, deadline: float) -> Context:
        return replace(self, deadline=deadline)

    def host_deadline(self) -> float | None:
        """When per-host calls must give up so the run still has a fifth of its time left to store results:
        a slow host then costs its own data, never the whole run."""
        if self.deadline is None:
            return None
        now = asyncio.get_running_loop().time()
        return self.deadline - max(0.2 * (self.deadline - now), 0.2)


@dataclass(frozen=True)
class Job:
    name: str
    func: JobFunc
    description: str


@dataclass(frozen=True)
class CommandType:
    type: str
    func: CommandFunc
    description: str
