"""A small SSE client for tests: parses the stream as a browser's EventSource would."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Event:
    event: str
    data: Any
    id: int | None

    @property
    def subject(self) -> str | None:
        return self.data.get("subject") if isinstance(self.data, dict) else None

    @property
    def type(self) -> str:
        return str(self.data.get("type", self.event)) if isinstance(self.data, dict) else self.event


class Stream:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.last_id: int | None = None
        self.history: list[Event] = []

    async def next(self, timeout: float = 10) -> Event:
        async with asyncio.timeout(timeout):
            fields: dict[str, str] = {}
            data: list[str] = []
            async for line in self._lines:
                if line == "":
                    if data:
                        event = Event(
                            fields.get("event", "message"),
                            json.loads("\n".join(data)) if data else None,
                            int(fields["id"]) if "id" in fields else None,
                        )
                        if event.id is not None:
                            self.last_id = event.id
                        self.history.append(event)
                        return event
                    fields.clear()
                    continue
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    data.append(value)
                else:
                    fields[name] = value
            raise EOFError("stream ended")

    async def wait_for(self, predicate: Callable[[Event], bool], timeout: float = 30) -> Event:
        """The first event, already received or still to come, that matches: order-independent waiting."""
        for event in self.history:
            if predicate(event):
                return event
        return (await self.until(predicate, timeout))[-1]

    async def until(self, predicate: Callable[[Event], bool], timeout: float = 15) -> list[Event]:
        """Read events until one matches; returns all read, the match last."""
        seen: list[Event] = []
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next(timeout)
                seen.append(event)
                if predicate(event):
                    return seen


@asynccontextmanager
async def open_stream(
    base_url: str, *, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> AsyncIterator[Stream]:
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(30, read=None)) as client,
        client.stream("GET", "/api/events/stream", params=params, headers=headers) as response,
    ):
        if response.status_code != 200:
            await response.aread()
            raise AssertionError(f"stream refused: {response.status_code} {response.text}")
        yield Stream(response)
