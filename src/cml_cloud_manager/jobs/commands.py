"""The durable command queue: the API stores a command (202 + id), a worker claims, runs and reports it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import AppError
from ..events import outbox
from ..stopping import finish
from ..storage.models import CommandRow
from .context import CommandType, Context

log = logging.getLogger(__name__)

COMMANDS = Counter("commands_total", "Commands run by this worker, by outcome", ["type", "outcome"])
COMMANDS_QUEUED = "commands_queued"


def describe(row: CommandRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": row.type,
        "status": row.status,
        "worker_id": row.worker_id,
        "progress": row.progress,
        "result": row.result,
        "error": row.error,
        "attempts": row.attempts,
        "created_at": row.created_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
    }


async def enqueue(
    session: AsyncSession,
    type: str,
    payload: dict[str, Any],
    *,
    worker_id: str | None = None,
    requested_by: str = "",
) -> CommandRow:
    row = CommandRow(
        type=type,
        payload=payload,
        worker_id=worker_id,
        requested_by=requested_by,
        created_at=datetime.now(UTC),
    )
    session.add(row)
    await session.flush()
    await outbox.append(
        session,
        "command.queued",
        {"command_id": row.id, "type": type, "worker_id": worker_id},
        worker_id=worker_id,
    )
    session.info[COMMANDS_QUEUED] = True
    return row


class CommandRunner:
    def __init__(self, ctx: Context, types: list[CommandType], *, concurrency: int = 8) -> None:
        self.ctx = ctx
        self.types = {t.type: t for t in types}
        self.concurrency = concurrency
        self.running: dict[str, asyncio.Task[None]] = {}
        self.wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            claimed = None
            if len(self.running) < self.concurrency:
                try:
                    claimed = await self._claim()
                except Exception as exc:
                    log.warning("could not claim commands: %s", exc)
            if claimed is not None:
                self._spawn(claimed)
                continue
            self.wake.clear()  # the runtime also sets `wake` when it stops, so this never outlasts a stop
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.ctx.settings.command_poll_interval):
                    await self.wake.wait()

    async def _claim(self) -> CommandRow | None:
        settings = self.ctx.settings
        async with self.ctx.db.session() as session:
            now = await self.ctx.db.now(session)
            candidate = (
                await session.scalars(
                    select(CommandRow)
                    .where(
                        or_(
                            CommandRow.status == "queued",
                            (CommandRow.status == "running") & (CommandRow.lease_expires_at <= now),
                        ),
                        CommandRow.type.in_(self.types),
                    )
                    .order_by(CommandRow.created_at)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
            ).first()
            if candidate is None:
                return None
            if candidate.attempts >= settings.command_max_attempts:
                await self._finish(
                    session, candidate, "failed", None, f"abandoned after {candidate.attempts} attempts", now
                )
                return None
            candidate.status = "running"
            candidate.claimed_by = self.ctx.process_id
            candidate.attempts += 1
            candidate.started_at = now
            candidate.lease_expires_at = now + timedelta(seconds=settings.lease_seconds)
            await outbox.append(
                session,
                "command.started",
                {
                    "command_id": candidate.id,
                    "type": candidate.type,
                    "attempt": candidate.attempts,
                    "claimed_by": self.ctx.process_id,
                },
                worker_id=candidate.worker_id,
            )
            return candidate

    def _spawn(self, row: CommandRow) -> None:
        task = asyncio.create_task(self._execute(row), name=f"command:{row.type}:{row.id}")
        self.running[row.id] = task
        task.add_done_callback(lambda _: self.running.pop(row.id, None))

    async def _execute(self, row: CommandRow) -> None:
        log.info("command %s (%s) started, attempt %d", row.type, row.id, row.attempts)

        async def progress(message: str) -> None:
            async with self.ctx.db.session() as session:
                await session.execute(
                    update(CommandRow)
                    .where(CommandRow.id == row.id, CommandRow.claimed_by == self.ctx.process_id)
                    .values(progress=message)
                )
                await outbox.append(
                    session,
                    "command.progress",
                    {"command_id": row.id, "type": row.type, "message": message},
                    worker_id=row.worker_id,
                )

        outcome, result, error = "succeeded", None, ""
        try:
            result = await self.types[row.type].func(self.ctx.for_command(row.id, progress), row.payload)
        except asyncio.CancelledError:
            await asyncio.shield(self._requeue(row))
            raise
        except AppError as exc:
            outcome, error = "failed", exc.message
            log.warning("command %s (%s) failed: %s", row.type, row.id, exc.message)
        except Exception as exc:
            outcome, error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("command %s (%s) failed", row.type, row.id)
        COMMANDS.labels(row.type, outcome).inc()
        try:
            async with self.ctx.db.session() as session:
                current = await session.get(CommandRow, row.id)
                if current is None or current.claimed_by != self.ctx.process_id or current.status != "running":
                    log.warning("command %s was taken over; not recording this result", row.id)
                    return
                await self._finish(session, current, outcome, result, error, await self.ctx.db.now(session))
        except Exception as exc:
            log.error("could not record the result of command %s: %s", row.id, exc)
        log.info("command %s (%s) %s", row.type, row.id, outcome)

    async def _finish(
        self,
        session: AsyncSession,
        row: CommandRow,
        outcome: str,
        result: dict[str, Any] | None,
        error: str,
        now: datetime,
    ) -> None:
        row.status = outcome
        row.result = result
        row.error = error
        row.finished_at = now
        row.lease_expires_at = None
        await outbox.append(
            session,
            "command.completed" if outcome == "succeeded" else "command.failed",
            {"command_id": row.id, "type": row.type, "status": outcome, "result": result, "error": error},
            worker_id=row.worker_id,
        )

    async def _requeue(self, row: CommandRow) -> None:
        """Shutdown interrupted it: hand it back to the queue without counting the attempt."""
        try:
            async with self.ctx.db.session() as session:
                await session.execute(
                    update(CommandRow)
                    .where(CommandRow.id == row.id, CommandRow.claimed_by == self.ctx.process_id)
                    .values(status="queued", claimed_by=None, lease_expires_at=None, attempts=row.attempts - 1)
                )
            log.info("command %s (%s) interrupted and requeued", row.type, row.id)
        except Exception as exc:
            log.error("could not requeue command %s: %s", row.id, exc)

    async def drain(self, grace: float) -> None:
        await finish(list(self.running.values()), grace)
