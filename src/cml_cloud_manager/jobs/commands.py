"""The durable command queue: the API stores a command (202 + id), a worker claims, runs and reports it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import AppError
from ..events import outbox
from ..stopping import finish
from ..storage.models import CommandRow, CommandSecretRow
from ..storage.retry import contention, retry_on_contention
from ..storage.wipe import truncate_log
from .context import CommandPayload, CommandType, Context, InvalidPayload
from .events import CommandFinished, CommandProgress, CommandQueued, CommandStarted

log = logging.getLogger(__name__)

COMMANDS = Counter("commands_total", "Commands run by this worker, by outcome", ["type", "outcome"])
COMMANDS_QUEUED = "commands_queued"
# The outcome of an attempt that lost a database lock conflict: the command is queued again, not failed.
RETRYING = "retrying"


async def enqueue(
    session: AsyncSession,
    payload: CommandPayload,
    *,
    worker_id: str | None = None,
    requested_by: str = "",
    secret: str | None = None,
) -> CommandRow:
    """Queue `payload` as a `payload.command` command (the model validated it when it was built). `secret` (a
    license token) is stored apart from the payload and deleted when the command ends."""
    type = payload.command
    row = CommandRow(
        type=type,
        payload=payload.model_dump(mode="json"),
        worker_id=worker_id,
        requested_by=requested_by,
        created_at=datetime.now(UTC),
    )
    session.add(row)
    await session.flush()
    if secret is not None:
        session.add(CommandSecretRow(command_id=row.id, value=secret))
    queued = CommandQueued(command_id=row.id, type=type, worker_id=worker_id, attempt=1, reason="")
    await outbox.append(session, queued, worker_id=worker_id)
    session.info[COMMANDS_QUEUED] = True
    return row


class StalePayload(AppError):
    """A stored payload its command's model no longer accepts (queued by another version, or edited)."""

    code = "stale_command_payload"


def stored_payload(command: CommandType[Any], row: CommandRow) -> CommandPayload:
    model: type[CommandPayload] = command.payload
    try:
        return model.model_validate(row.payload)  # through the model's __init__, which raises InvalidPayload
    except InvalidPayload as exc:
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in exc.detail["errors"])
        raise StalePayload(
            f"The stored payload of this {row.type} command is not one this version can run ({detail}); queue it again"
        ) from None


class SecretGone(AppError):
    status_code = 409
    code = "command_secret_gone"


async def secret(ctx: Context) -> str:
    """The secret the running command was queued with."""
    async with ctx.db.session(write=False) as session:
        row = await session.get(CommandSecretRow, ctx.command_id)
    if row is None:
        raise SecretGone("The secret this command was queued with is no longer stored; queue it again")
    return row.value


class CommandRunner:
    def __init__(self, ctx: Context, types: list[CommandType[Any]], *, concurrency: int = 8) -> None:
        self.ctx = ctx
        self.types = {t.type: t for t in types}
        self.concurrency = concurrency
        self.running: dict[str, asyncio.Task[None]] = {}
        # Running commands that are only waiting (`ctx.pause`): they leave their slot to others meanwhile, so
        # commands following slow instances through minutes of state changes never hold up the queue.
        self.waiting: set[str] = set()
        self.wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            claimed = None
            if len(self.running) - len(self.waiting) < self.concurrency:
                try:
                    claimed = await self._claim()
                except Exception as exc:
                    log.warning("could not claim commands: %s", exc)
            if claimed is not None and claimed.status == "running":
                self._spawn(claimed)
                continue
            self.wake.clear()  # the runtime also sets `wake` when it stops, so this never outlasts a stop
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.ctx.settings.command_poll_interval):
                    await self.wake.wait()

    async def run_burst(self) -> int:
        """Run commands until none is left to claim and none is running, then return how many attempts were
        started: arq's burst mode. Tests (and one-off tools) drive the queue to its end without polling."""
        started = 0
        try:
            while True:
                claimed = None
                if len(self.running) - len(self.waiting) < self.concurrency:
                    claimed = await self._claim()
                if claimed is not None:  # claimed, or abandoned: either way look for the next one
                    if claimed.status == "running":
                        self._spawn(claimed)
                        started += 1
                    continue
                if not self.running:
                    return started
                # A command ending, or one pausing (its slot is lent), may make the next claim possible.
                self.wake.clear()
                woken = asyncio.create_task(self.wake.wait())
                try:
                    await asyncio.wait([woken, *self.running.values()], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    woken.cancel()
        finally:
            await finish(list(self.running.values()), 0)  # only when leaving on an error: nothing runs otherwise

    @retry_on_contention
    async def _claim(self) -> CommandRow | None:
        """The oldest claimable command, now running under this process; an abandoned one (too many attempts),
        now failed; or None when none is claimable."""
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
            abandoned = candidate.attempts >= settings.command_max_attempts
            had_secret = False
            if abandoned:
                reason = f"abandoned after {candidate.attempts} attempts"
                had_secret = await self._finish(session, candidate, "failed", None, reason, now)
            else:
                candidate.status = "running"
                candidate.claimed_by = self.ctx.process_id
                candidate.attempts += 1
                candidate.started_at = now
                candidate.lease_expires_at = now + timedelta(seconds=settings.lease_seconds)
                started = CommandStarted(
                    command_id=candidate.id,
                    type=candidate.type,
                    attempt=candidate.attempts,
                    claimed_by=self.ctx.process_id,
                )
                await outbox.append(session, started, worker_id=candidate.worker_id)
        if had_secret:  # after the commit: the log now holds the zeroed page
            await truncate_log(self.ctx.db)
        return candidate

    def _spawn(self, row: CommandRow) -> None:
        task = asyncio.create_task(self._execute(row), name=f"command:{row.type}:{row.id}")
        self.running[row.id] = task
        task.add_done_callback(lambda _: self.running.pop(row.id, None))

    async def _execute(self, row: CommandRow) -> None:
        log.info("command %s (%s) started, attempt %d", row.type, row.id, row.attempts)

        @retry_on_contention
        async def progress(message: str) -> None:
            async with self.ctx.db.session() as session:
                await session.execute(
                    update(CommandRow)
                    .where(CommandRow.id == row.id, CommandRow.claimed_by == self.ctx.process_id)
                    .values(progress=message)
                )
                progressed = CommandProgress(command_id=row.id, type=row.type, message=message)
                await outbox.append(session, progressed, worker_id=row.worker_id)

        async def pause(seconds: float) -> None:
            self.waiting.add(row.id)
            self.wake.set()  # a slot is free: claim the next command now
            try:
                await asyncio.sleep(seconds)
            finally:
                self.waiting.discard(row.id)

        outcome, result, error = "succeeded", None, ""
        try:
            command = self.types[row.type]
            payload = stored_payload(command, row)
            report = await command.func(self.ctx.for_command(row.id, progress, pause), payload)
            result = report.model_dump(mode="json")
        except asyncio.CancelledError:
            await asyncio.shield(self._requeue(row))
            raise
        except AppError as exc:
            outcome, error = "failed", exc.message
            log.warning("command %s (%s) failed: %s", row.type, row.id, exc.message)
        except Exception as exc:
            if (reason := contention(exc)) is not None:
                # The database is up and the command is sound: it lost a lock conflict (a deadlock) even after
                # its own retries. It goes back to the queue as a new attempt (COMMAND_MAX_ATTEMPTS bounds them).
                outcome, error = RETRYING, f"attempt {row.attempts} lost a database lock conflict ({reason})"
                log.warning("command %s (%s): %s; queued again", row.type, row.id, error)
            else:
                outcome, error = "failed", f"{type(exc).__name__}: {exc}"
                log.exception("command %s (%s) failed", row.type, row.id)
        COMMANDS.labels(row.type, outcome).inc()
        try:
            stored, had_secret = await self._record(row, outcome, result, error)
            if not stored:
                log.warning("command %s was taken over; not recording this result", row.id)
                return
            if had_secret:  # after the commit: the log now holds the zeroed page
                await truncate_log(self.ctx.db)
        except Exception as exc:
            log.error("could not record the result of command %s: %s", row.id, exc)
        log.info("command %s (%s) %s", row.type, row.id, outcome)

    @retry_on_contention
    async def _record(
        self, row: CommandRow, outcome: str, result: dict[str, Any] | None, error: str
    ) -> tuple[bool, bool]:
        """Store how the attempt ended, unless another worker took the command over. Returns whether it was
        stored and whether that deleted the command's secret (a command queued again keeps it)."""
        async with self.ctx.db.session() as session:
            current = await session.get(CommandRow, row.id)
            if current is None or current.claimed_by != self.ctx.process_id or current.status != "running":
                return False, False
            if outcome == RETRYING:
                await self._queue_again(session, current, error)
                return True, False
            had_secret = await self._finish(session, current, outcome, result, error, await self.ctx.db.now(session))
        return True, had_secret

    async def _queue_again(self, session: AsyncSession, row: CommandRow, reason: str) -> None:
        """Back to the queue, the attempt counted: the next claim (here or on another worker) runs it again."""
        row.status = "queued"
        row.claimed_by = None
        row.lease_expires_at = None
        row.error = reason
        queued = CommandQueued(
            command_id=row.id, type=row.type, worker_id=row.worker_id, attempt=row.attempts + 1, reason=reason
        )
        await outbox.append(session, queued, worker_id=row.worker_id)

    async def _finish(
        self,
        session: AsyncSession,
        row: CommandRow,
        outcome: str,
        result: dict[str, Any] | None,
        error: str,
        now: datetime,
    ) -> bool:
        """Record the outcome and delete the command's secret, in one transaction: a finished command never
        holds one, whatever the outcome. Returns whether there was a secret."""
        secret = await session.execute(delete(CommandSecretRow).where(CommandSecretRow.command_id == row.id))
        row.status = outcome
        row.result = result
        row.error = error
        row.finished_at = now
        row.lease_expires_at = None
        finished = CommandFinished(command_id=row.id, type=row.type, status=outcome, result=result, error=error)
        await outbox.append(
            session,
            finished,
            type="command.completed" if outcome == "succeeded" else "command.failed",
            worker_id=row.worker_id,
        )
        return bool(secret.rowcount)  # type: ignore[attr-defined]

    async def _requeue(self, row: CommandRow) -> None:
        """Shutdown interrupted it: hand it back to the queue without counting the attempt."""

        @retry_on_contention
        async def requeue() -> None:
            async with self.ctx.db.session() as session:
                await session.execute(
                    update(CommandRow)
                    .where(CommandRow.id == row.id, CommandRow.claimed_by == self.ctx.process_id)
                    .values(status="queued", claimed_by=None, lease_expires_at=None, attempts=row.attempts - 1)
                )

        try:
            await requeue()
            log.info("command %s (%s) interrupted and requeued", row.type, row.id)
        except Exception as exc:
            log.error("could not requeue command %s: %s", row.id, exc)

    async def drain(self, grace: float) -> None:
        await finish(list(self.running.values()), grace)
