"""The durable command queue against a real database, driven by the runner's burst mode (run until the queue is
empty, then return) and, where the loop itself is what is tested, by its normal loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
from sqlalchemy import select

from cml_cloud_manager.config import Settings
from cml_cloud_manager.errors import Conflict
from cml_cloud_manager.jobs.commands import CommandRunner, enqueue, secret
from cml_cloud_manager.jobs.context import CommandPayload, CommandType, Context, InvalidPayload, Report
from cml_cloud_manager.jobs.integrations import build_integrations
from cml_cloud_manager.stopping import finish
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import CommandRow, CommandSecretRow, EventRow


class Echo(CommandPayload):
    command: ClassVar[str] = "test.echo"

    value: int


class Refuse(CommandPayload):
    command: ClassVar[str] = "test.refuse"


class Follows(CommandPayload):
    command: ClassVar[str] = "test.follows"


class ReadsSecret(CommandPayload):
    command: ClassVar[str] = "test.secret"


class Hangs(CommandPayload):
    command: ClassVar[str] = "test.hangs"


class Foreign(CommandPayload):
    command: ClassVar[str] = "other.type"


class Echoed(Report):
    echo: int


class SecretLength(Report):
    secret_length: int


async def echo(ctx: Context, payload: Echo) -> Echoed:
    await ctx.progress("halfway")
    return Echoed(echo=payload.value)


async def refuse(ctx: Context, payload: Refuse) -> Report:
    raise Conflict("the worker is busy")


COMMANDS: list[CommandType[Any]] = [CommandType(Echo, echo, ""), CommandType(Refuse, refuse, "")]


@pytest.fixture
async def make_runner(db: Database, settings: Settings) -> AsyncIterator[Callable[..., CommandRunner]]:
    """make_runner(name, *extra command types, concurrency=...) -> a runner on its own process id."""
    made: list[Context] = []

    def make(name: str = "w1", *extra: CommandType[Any], concurrency: int = 8) -> CommandRunner:
        ctx = Context(db=db, settings=settings, integrations=build_integrations(settings), process_id=name)
        made.append(ctx)
        return CommandRunner(ctx, [*COMMANDS, *extra], concurrency=concurrency)

    yield make
    for ctx in made:
        await ctx.integrations.aclose()


@pytest.fixture
async def loop() -> AsyncIterator[Callable[[CommandRunner], None]]:
    """loop(runner) starts the runner's normal loop; at teardown each is told to stop and awaited, as the
    worker's shutdown does, with any command still running cancelled and awaited too."""
    started: list[tuple[CommandRunner, asyncio.Event, asyncio.Task[None]]] = []

    def start(runner: CommandRunner) -> None:
        stop = asyncio.Event()
        started.append((runner, stop, asyncio.create_task(runner.run(stop), name="command loop")))

    yield start
    for runner, stop, _ in started:
        stop.set()
        runner.wake.set()
    cancelled = await finish([task for _, _, task in started], 5)
    for runner, _, _ in started:
        await runner.drain(0)
    assert not cancelled, "a command loop did not stop when told"


async def status_of(db: Database, command_id: str) -> CommandRow:
    async with db.session(write=False) as session:
        row = await session.get(CommandRow, command_id)
    assert row is not None
    return row


async def wait_for_status(db: Database, command_id: str, status: str, timeout: float = 10) -> CommandRow:
    deadline = time.monotonic() + timeout
    while (row := await status_of(db, command_id)).status != status:
        assert time.monotonic() < deadline, f"command {command_id} never reached {status}; last: {row.status}"
        await asyncio.sleep(0.02)
    return row


async def test_a_command_runs_once_and_reports(db: Database, make_runner: Callable[..., CommandRunner]) -> None:
    async with db.session() as session:
        command = await enqueue(session, Echo(value=42))
    # Two workers race for it: exactly one runs it.
    started = await asyncio.gather(make_runner("w1").run_burst(), make_runner("w2").run_burst())
    assert sorted(started) == [0, 1]
    row = await status_of(db, command.id)
    assert (row.status, row.result, row.attempts, row.progress) == ("succeeded", {"echo": 42}, 1, "halfway")
    async with db.session(write=False) as session:
        types = [e.type for e in (await session.scalars(select(EventRow).order_by(EventRow.seq))).all()]
    assert types == ["command.queued", "command.started", "command.progress", "command.completed"]


async def test_a_failed_command_keeps_the_reason(db: Database, make_runner: Callable[..., CommandRunner]) -> None:
    async with db.session() as session:
        command = await enqueue(session, Refuse())
    assert await make_runner().run_burst() == 1
    row = await status_of(db, command.id)
    assert (row.status, row.error, row.result) == ("failed", "the worker is busy", None)


async def test_a_burst_runs_what_it_knows_and_returns_when_nothing_is_left(
    db: Database, make_runner: Callable[..., CommandRunner]
) -> None:
    runner = make_runner(concurrency=2)
    assert await runner.run_burst() == 0  # an empty queue: returns at once
    async with db.session() as session:
        commands = [await enqueue(session, Echo(value=n)) for n in range(5)]
        foreign = await enqueue(session, Foreign())  # another worker version's command: not ours to run
    assert await runner.run_burst() == 5
    assert [(await status_of(db, c.id)).result for c in commands] == [{"echo": n} for n in range(5)]
    assert (await status_of(db, foreign.id)).status == "queued"
    assert not runner.running


async def test_a_command_waiting_on_the_outside_world_lends_its_slot(
    db: Database, make_runner: Callable[..., CommandRunner]
) -> None:
    """A command following an instance through minutes of state changes must not hold up the queue: with one
    slot, a command queued behind the waiting one runs (and ends) while the first still waits."""

    queued: dict[str, str] = {}
    pauses: list[float] = []

    async def follows(ctx: Context, payload: Follows) -> Report:
        deadline = time.monotonic() + 10
        while (await status_of(ctx.db, queued["behind"])).status != "succeeded":
            assert time.monotonic() < deadline, "the command queued behind never ran"
            pauses.append(0.02)
            await ctx.pause(0.02)
        return Report()

    async with db.session() as session:
        following = await enqueue(session, Follows())
    async with db.session() as session:  # queued later, so claimed second
        behind = await enqueue(session, Echo(value=1))
    queued["behind"] = behind.id
    assert await make_runner("w1", CommandType(Follows, follows, ""), concurrency=1).run_burst() == 2
    assert pauses, "the waiting command was not the one claimed first"
    first, second = await status_of(db, following.id), await status_of(db, behind.id)
    assert (first.status, second.status) == ("succeeded", "succeeded")
    assert first.finished_at is not None and second.finished_at is not None
    assert second.finished_at <= first.finished_at


async def test_a_commands_secret_is_gone_once_it_ends_whatever_the_outcome(
    db: Database, settings: Settings, make_runner: Callable[..., CommandRunner]
) -> None:
    async def reads_secret(ctx: Context, payload: ReadsSecret) -> Report:
        return SecretLength(secret_length=len(await secret(ctx)))  # never echo it

    async with db.session() as session:
        succeeds = await enqueue(session, ReadsSecret(), secret="s-1")
        fails = await enqueue(session, Refuse(), secret="s-2")
        abandoned = await enqueue(session, Echo(value=1), secret="s-3")
        abandoned.attempts = settings.command_max_attempts  # its workers died that often
    async with db.session(write=False) as session:
        assert len((await session.scalars(select(CommandSecretRow))).all()) == 3
    # The abandoned one is failed without being run; the burst goes on to the others.
    assert await make_runner("w1", CommandType(ReadsSecret, reads_secret, "")).run_burst() == 2
    assert (await status_of(db, succeeds.id)).result == {"secret_length": 3}
    assert (await status_of(db, fails.id)).status == "failed"
    gave_up = await status_of(db, abandoned.id)
    assert gave_up.status == "failed" and "abandoned after" in gave_up.error
    async with db.session(write=False) as session:
        assert (await session.scalars(select(CommandSecretRow))).all() == []
        payloads = (await session.scalars(select(CommandRow.payload))).all()
    assert not [p for p in payloads if "s-" in str(p)]


async def test_the_loop_takes_commands_queued_while_it_runs(
    db: Database, make_runner: Callable[..., CommandRunner], loop: Callable[[CommandRunner], None]
) -> None:
    runner = make_runner()
    loop(runner)
    for value in (1, 2):
        async with db.session() as session:
            command = await enqueue(session, Echo(value=value))
        runner.wake.set()  # what the Redis wake-up (or the in-process one in `all` mode) does
        assert (await wait_for_status(db, command.id, "succeeded")).result == {"echo": value}


async def test_an_interrupted_burst_hands_its_command_back(
    db: Database, make_runner: Callable[..., CommandRunner]
) -> None:
    entered = asyncio.Event()

    async def hangs(ctx: Context, payload: Hangs) -> Report:
        entered.set()
        await asyncio.Event().wait()
        return Report()

    async with db.session() as session:
        command = await enqueue(session, Hangs())
    runner = make_runner("w1", CommandType(Hangs, hangs, ""))
    burst = asyncio.create_task(runner.run_burst())
    await asyncio.wait_for(entered.wait(), 10)
    burst.cancel()
    with pytest.raises(asyncio.CancelledError):
        await burst
    assert not runner.running  # cancelled and awaited, not left behind
    row = await status_of(db, command.id)
    assert (row.status, row.claimed_by, row.attempts) == ("queued", None, 0)


async def test_a_payload_its_model_refuses_is_not_queued(db: Database) -> None:
    with pytest.raises(InvalidPayload) as refused:
        Echo(value="forty-two")  # what a caller with unchecked input could pass
    assert refused.value.status_code == 422
    assert refused.value.message == (
        "Cannot queue test.echo: value: Input should be a valid integer, unable to parse string as an integer"
    )
    assert refused.value.detail["errors"] == [
        {"field": "value", "message": "Input should be a valid integer, unable to parse string as an integer"}
    ]
    with pytest.raises(InvalidPayload, match=r"Cannot queue test\.echo: unknown: Extra inputs are not permitted"):
        Echo(value=1, unknown=True)  # type: ignore[call-arg]


async def test_a_stored_payload_that_no_longer_validates_fails_its_command_and_the_queue_goes_on(
    db: Database, make_runner: Callable[..., CommandRunner]
) -> None:
    """A row queued by another version (or edited by hand) that the model refuses: the command fails saying
    why, the runner survives it and runs the next one."""
    async with db.session() as session:
        stale = CommandRow(type="test.echo", payload={"value": "many"}, created_at=datetime.now(UTC))
        session.add(stale)
        await session.flush()
        sound = await enqueue(session, Echo(value=7))
    assert await make_runner().run_burst() == 2
    failed = await status_of(db, stale.id)
    assert (failed.status, failed.result) == ("failed", None)
    assert failed.error == (
        "The stored payload of this test.echo command is not one this version can run (value: Input should be a "
        "valid integer, unable to parse string as an integer); queue it again"
    )
    assert (await status_of(db, sound.id)).result == {"echo": 7}
