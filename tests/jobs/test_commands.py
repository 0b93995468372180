"""The durable command queue against a real database."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from cml_cloud_manager.config import Settings
from cml_cloud_manager.errors import Conflict
from cml_cloud_manager.integrations import build_integrations
from cml_cloud_manager.jobs.commands import CommandRunner, enqueue
from cml_cloud_manager.jobs.context import CommandType, Context
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import CommandRow, EventRow

TASKS: set[asyncio.Task[None]] = set()


async def echo(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    await ctx.progress("halfway")
    return {"echo": payload["value"]}


async def refuse(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    raise Conflict("the worker is busy")


async def wait_for_status(db: Database, command_id: str, status: str) -> CommandRow:
    for _ in range(200):
        async with db.session(write=False) as session:
            row = await session.get(CommandRow, command_id)
            assert row is not None
            if row.status == status:
                return row
        await asyncio.sleep(0.05)
    raise AssertionError(f"command {command_id} never reached {status}; last: {row.status}")


async def run_runner(db: Database, settings: Settings, name: str = "w1") -> tuple[CommandRunner, asyncio.Event]:
    ctx = Context(db=db, settings=settings, integrations=build_integrations(settings), process_id=name)
    runner = CommandRunner(ctx, [CommandType("test.echo", echo, ""), CommandType("test.refuse", refuse, "")])
    stop = asyncio.Event()
    TASKS.add(asyncio.create_task(runner.run(stop)))
    return runner, stop


async def test_command_runs_once_and_reports(db: Database, settings: Settings) -> None:
    async with db.session() as session:
        command = await enqueue(session, "test.echo", {"value": 42})
    runners = [await run_runner(db, settings, name) for name in ("w1", "w2")]
    row = await wait_for_status(db, command.id, "succeeded")
    for runner, stop in runners:
        stop.set()
        runner.wake.set()
    assert row.result == {"echo": 42}
    assert row.attempts == 1
    assert row.progress == "halfway"
    async with db.session(write=False) as session:
        types = [e.type for e in (await session.scalars(select(EventRow).order_by(EventRow.seq))).all()]
    assert types == ["command.queued", "command.started", "command.progress", "command.completed"]


async def test_failed_command_keeps_the_reason(db: Database, settings: Settings) -> None:
    async with db.session() as session:
        command = await enqueue(session, "test.refuse", {})
    runner, stop = await run_runner(db, settings)
    row = await wait_for_status(db, command.id, "failed")
    stop.set()
    runner.wake.set()
    assert row.error == "the worker is busy"
