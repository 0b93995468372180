"""The data of the command and job-run events. What a command or a run reports (`result`, `summary`) is its own
`Report` model, one per command type and job (`GET /api/commands/{id}`, the jobs page show them)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, JsonValue

from ..events.data import EventData


class CommandQueued(EventData):
    """A command was queued, or queued again after an attempt lost a database lock conflict."""

    types: ClassVar[tuple[str, ...]] = ("command.queued",)

    command_id: str
    type: str = Field(description="The command type, e.g. worker.start")
    worker_id: str | None
    attempt: int = Field(description="The attempt it waits for: 1, or more when queued again")
    reason: str = Field(description="Why it was queued again; empty the first time")


class CommandStarted(EventData):
    """A worker process claimed a command and runs it."""

    types: ClassVar[tuple[str, ...]] = ("command.started",)

    command_id: str
    type: str
    attempt: int
    claimed_by: str = Field(description="The process running it")


class CommandProgress(EventData):
    """What a running command is doing now."""

    types: ClassVar[tuple[str, ...]] = ("command.progress",)

    command_id: str
    type: str
    message: str


class CommandFinished(EventData):
    """A command ended: `command.completed` when it succeeded, `command.failed` when not (`error` says why)."""

    types: ClassVar[tuple[str, ...]] = ("command.completed", "command.failed")

    command_id: str
    type: str
    status: str = Field(description="succeeded or failed")
    result: dict[str, JsonValue] | None = Field(description="What the command reported (its type's report)")
    error: str


class JobRunStarted(EventData):
    """A job run started: on schedule, asked for, or taken over from a process that stopped."""

    types: ClassVar[tuple[str, ...]] = ("job.run.started",)

    job: str
    run_id: int
    trigger: str = Field(description="schedule or manual")
    claimed_by: str = Field(description="The process running it")
    attempt: int
    taken_from: str | None = Field(description="The process whose claim lapsed, when taken over")


class JobRunCompleted(EventData):
    """A job run ended, whatever its outcome."""

    types: ClassVar[tuple[str, ...]] = ("job.run.completed",)

    job: str
    run_id: int
    trigger: str
    outcome: str = Field(description="success, failure or timeout")
    error: str
    duration_seconds: float
    summary: dict[str, JsonValue] | None = Field(description="What the run reported (its job's report)")
