"""What every job and command receives: a typed context, like arq's `ctx`, instead of globals."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from ..config import Settings
from ..errors import AppError
from ..storage.db import Database
from .integrations import Integrations


class Report(BaseModel):
    """What a job run or a command says when it ends: stored as JSON (a run's `summary`, a command's `result`),
    announced, and shown by the API. Each job and command has its own."""


JobFunc = Callable[["Context"], Awaitable[Report]]


def validation_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Pydantic's errors as the API's problems list them: `{"field": "a.b", "message": ...}`."""
    return [
        {
            "field": ".".join(str(part) for part in e["loc"] if part != "[key]") or "payload",
            "message": e["msg"].removeprefix("Value error, "),
        }
        for e in exc.errors()
    ]


class InvalidPayload(AppError):
    """A command queued with a payload its model refuses: nothing is queued."""

    status_code = 422
    code = "invalid_command_payload"


class CommandPayload(BaseModel):
    """What one command type is queued with, stored as JSON and validated again when a worker runs it: a
    handler receives the model, never raw JSON. `command` names the type it is queued as."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: ClassVar[str]

    def __init__(self, **fields: Any) -> None:
        # Built from a request's values, a payload that does not validate is the caller's error (a 4xx naming
        # the field), not a 500; anywhere else it fails the job or command that built it, with the same words.
        try:
            super().__init__(**fields)
        except ValidationError as exc:
            errors = validation_errors(exc)
            detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
            raise InvalidPayload(f"Cannot queue {self.command}: {detail}", errors=errors) from None


P = TypeVar("P", bound=CommandPayload)
CommandFunc = Callable[["Context", P], Awaitable[Report]]


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
    # How a command waits on the outside world (an instance changing state): the runner lends its slot meanwhile.
    pause: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)
    # Event-loop time by which the current job run must end (None: no limit, e.g. a command).
    deadline: float | None = None

    def for_command(
        self,
        command_id: str,
        progress: Callable[[str], Awaitable[None]],
        pause: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> Context:
        return replace(self, command_id=command_id, progress=progress, pause=pause)

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
class CommandType(Generic[P]):
    payload: type[P]
    func: CommandFunc[P]
    description: str

    @property
    def type(self) -> str:
        return self.payload.command
