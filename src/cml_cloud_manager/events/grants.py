"""What an SSE stream was opened with, as the access layer (auth, which sits above this package) tells it.

A stream outlives the request that opened it: the request's credential is checked once, but the stream goes on
for hours. So the stream keeps its `Grant` and ends when the credential ends (an event names one of its
`credentials`: `Hub.end_streams`), expires, or is refused when `Access.check` is asked again at `recheck_at`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from starlette.requests import Request


@dataclass(frozen=True)
class Grant:
    """What a stream was opened with, as the access layer tells it."""

    who: str
    # Names of what it authenticated with (its API token, its session): `Hub.end_streams` ends it with them.
    credentials: frozenset[str] = frozenset()
    expires_at: datetime | None = None  # the stream ends then
    recheck_at: datetime | None = None  # `Access.check` is asked again then: at or before `expires_at`


class Access(Protocol):
    async def check(self, request: Request) -> Grant:
        """The grant of the stream's caller as of now. Raises the refusal (an AppError: 401, 403) when the stream
        may not go on; any other error means no verdict (the check is made again later)."""


class Open:
    """No access layer: anyone who passed the guard, for as long as they like (tests of the stream itself)."""

    async def check(self, request: Request) -> Grant:
        return Grant("anyone")
