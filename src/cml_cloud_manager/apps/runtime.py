"""What every role shares: the database, the Redis notifier, the integrations, and post-commit wake-ups."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from ..config import ProcessRole, Settings
from ..events.notifier import Notifier
from ..jobs.commands import COMMANDS_QUEUED
from ..jobs.integrations import Integrations, build_integrations
from ..storage.db import LAST_SEQUENCE, Database
from ..storage.migrate import migrate
from ..web import sequence

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    db: Database
    notifier: Notifier
    integrations: Integrations
    # In-process receivers, so combined mode and the API's own writes need no round trip through Redis.
    on_events: list[Callable[[], None]] = field(default_factory=list)
    on_commands: list[Callable[[], None]] = field(default_factory=list)
    # The API's `Hub.reached`: waits until this process has applied events up to a sequence number.
    applied: Callable[[int, float], Awaitable[bool]] | None = None

    async def after_commit(self, info: dict[str, Any]) -> None:
        """Wake this process's receivers at once and the other processes through Redis, without waiting for
        Redis: the commit is done, and the request or job that made it goes on whatever Redis does.

        A request's commit is then awaited until this replica has applied it (read-your-writes, see
        `web/sequence.py`); a job's or a command's is not."""
        for wake in self.on_events:
            wake()
        self.notifier.nudge(self.notifier.channel)
        if info.get(COMMANDS_QUEUED):
            for wake in self.on_commands:
                wake()
            self.notifier.nudge(self.notifier.commands_channel)
        seq = info[LAST_SEQUENCE]
        if sequence.note(seq) and self.applied is not None:
            await self.applied(seq, sequence.READ_WAIT_SECONDS)


@asynccontextmanager
async def open_runtime(settings: Settings, role: ProcessRole) -> AsyncIterator[Runtime]:
    db = Database(settings, source=f"cml-cloud-manager/{role}@{socket.gethostname()}")
    notifier = Notifier(settings.redis_url, settings.redis_prefix)
    integrations = build_integrations(settings)
    runtime = Runtime(db=db, notifier=notifier, integrations=integrations)
    db.on_commit = runtime.after_commit
    try:
        await migrate(db, only_if_empty=True)
        yield runtime
    finally:
        await integrations.aclose()
        await notifier.aclose()
        await db.dispose()
