"""What every fault test ends with: each process recovered by itself (nothing restarted it), and SSE readers
that kept reading through the fault received exactly the outbox, in order, nothing lost and nothing twice."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import httpx
from sqlalchemy import func, select

from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import EventRow

from ..sse import Event, Stream, open_stream
from .processes import Proc

T = TypeVar("T")


@dataclass
class Reader:
    """One browser-like client on one API replica: every event with a sequence number, in the order received."""

    url: str
    after: int = 0  # the replica's position when this reader connected: it gets every event after it
    ids: list[int] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    ended: BaseException | None = None

    async def _read(self, stream: Stream) -> None:
        try:
            while True:
                event = await stream.next(timeout=3600)
                if event.id is not None:
                    self.ids.append(event.id)
                    self.events.append(event)
        except Exception as exc:  # the stream ended or broke: `match_outbox` reports it
            self.ended = exc


@asynccontextmanager
async def readers_on(*urls: str) -> AsyncIterator[list[Reader]]:
    """One reader per URL, each reading in the background for the whole block."""
    async with AsyncExitStack() as stack:
        readers = []
        tasks = []
        for url in urls:
            stream = await stack.enter_async_context(open_stream(url))
            connected = await stream.next()
            assert connected.event == "connected", connected
            reader = Reader(url, after=int(connected.data["sequence"]))
            readers.append(reader)
            tasks.append(asyncio.create_task(reader._read(stream), name=f"reader {url}"))
        try:
            yield readers
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def outbox_seqs(db: Database, after: int, through: int) -> list[int]:
    async with db.session(write=False) as session:
        found = await session.scalars(
            select(EventRow.seq).where(EventRow.seq > after, EventRow.seq <= through).order_by(EventRow.seq)
        )
        return list(found.all())


async def match_outbox(db: Database, readers: list[Reader], timeout: float = 30) -> int:
    """Waits until every reader has caught up with the outbox as it is now, then asserts each received exactly
    the outbox's events after its start, in order. Returns how many events the readers were compared on."""
    async with db.session(write=False) as session:
        last = (await session.execute(select(func.max(EventRow.seq)))).scalar() or 0
    deadline = time.monotonic() + timeout
    while any(not r.ids or r.ids[-1] < last for r in readers):
        stuck = [(r.url, r.ids[-1] if r.ids else None, repr(r.ended)) for r in readers if not r.ids or r.ids[-1] < last]
        assert time.monotonic() < deadline, f"readers did not reach seq {last} within {timeout}s: {stuck}"
        await asyncio.sleep(0.05)
    compared = 0
    for reader in readers:
        expected = await outbox_seqs(db, reader.after, last)
        got = [seq for seq in reader.ids if seq <= last]
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        twice = len(got) - len(set(got))
        assert got == expected, (
            f"reader on {reader.url}: {len(missing)} missing {missing[:10]}, {len(extra)} not in the outbox "
            f"{extra[:10]}, {twice} received twice, {len(got)} received, {len(expected)} in the outbox"
        )
        compared += len(expected)
    return compared


async def poll(what: str, probe: Callable[[], Awaitable[T | None]], timeout: float) -> T:
    """`probe()` until it returns something other than None (errors count as None), within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            found = await probe()
        except (httpx.TransportError, KeyError, ValueError) as exc:  # refused, reset, or a 503 of another shape
            found, last = None, exc
        if found is not None:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s (last: {last!r})"
        await asyncio.sleep(0.1)


async def recovered(apis: list[Proc], workers: list[Proc], *, redis: bool, timeout: float = 30) -> float:
    """Polls until every process is back by itself, and returns how long that took: each API answers a read,
    and its health sees the database (and Redis, when configured) up; each worker is ready (its heartbeat
    reached the database); a write through the first API queues a command that a worker then runs."""
    began = time.monotonic()
    async with httpx.AsyncClient(timeout=5) as client:
        for api in apis:

            async def api_back(api: Proc = api) -> bool | None:
                if (await client.get(f"{api.url}/api/commands")).status_code != 200:  # a read of the database
                    return None
                health = (await client.get(f"{api.url}/api/health")).json()["components"]
                wanted = "up" if redis else "disabled"
                return True if health["database"] == "up" and health["redis"] == wanted else None

            await poll(f"{api.role} {api.url} recovered", api_back, timeout)
        for worker in workers:

            async def worker_back(worker: Proc = worker) -> bool | None:
                ready = await client.get(f"http://127.0.0.1:{worker.health_port}/health/ready")
                return True if ready.status_code == 200 else None

            await poll(f"worker {worker.health_port} ready", worker_back, timeout)

        async def queued() -> str | None:
            response = await client.post(f"{apis[0].url}/api/system/jobs/housekeeping/run")
            return str(response.json()["command_id"]) if response.status_code == 202 else None

        command_id = await poll("a write accepted", queued, timeout)

        async def ran() -> bool | None:
            command = (await client.get(f"{apis[0].url}/api/commands/{command_id}")).json()
            # A scheduled run going on another worker at that moment makes "run now" a conflict: a worker still
            # claimed the command and ran it, which is what this shows.
            busy = command["status"] == "failed" and "already running" in (command["error"] or "")
            assert command["status"] != "failed" or busy, f"command {command_id} failed: {command}"
            return True if command["status"] == "succeeded" or busy else None

        await poll("a command run by a worker", ran, timeout)
    return time.monotonic() - began
