"""The API side of events: read new outbox rows once per process and fan them out to local SSE clients."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal, Protocol

from fastapi import Depends, Request
from prometheus_client import Counter, Gauge
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..config import Settings
from ..storage.db import Database
from ..storage.models import EventRow
from .cloudevents import envelope, schemas_url, sse_frame
from .grants import Access, Open
from .notifier import Notifier

log = logging.getLogger(__name__)

SSE_CLIENTS = Gauge("sse_clients_active", "SSE clients connected to this API process")
EVENTS_RELAYED = Counter("events_relayed_total", "Outbox events read and fanned out by this API process")
SSE_DELIVERIES = Counter("sse_deliveries_total", "Event frames queued to SSE clients")
SSE_DROPPED = Counter("sse_clients_dropped_total", "SSE clients disconnected because they fell behind")

BATCH = 500
# At shutdown, how long a stream's write may block before the stream is cut off (see `Hub.shutdown`).
SHUTDOWN_WRITE_SECONDS = 1.0
# What `Client.next_chunk` answers instead of frames when the hub asks something of the stream.
Due = Literal["heartbeat", "recheck"]


@dataclass(frozen=True, slots=True)
class Relayed:
    seq: int
    type: str
    worker_id: str | None
    frame: bytes


def to_relayed(row: EventRow, schemas: str) -> Relayed:
    """The event encoded once, whatever number of clients it goes to (`schemas`: `cloudevents.schemas_url`)."""
    return Relayed(row.seq, row.type, row.worker_id, sse_frame(envelope(row, schemas), seq=row.seq))


@dataclass(eq=False)
class Client:
    """One SSE connection: a bounded buffer of ready-made frames and a wake-up flag."""

    worker_ids: frozenset[str] | None
    event_types: tuple[str, ...] | None
    limit: int
    # What the stream was opened with (`Grant.credentials`): `Hub.end_streams` ends it when one of them ends.
    credentials: frozenset[str] = frozenset()
    # Loop time at which its grant must be checked again (a session's expiry or refresh), if ever.
    recheck_at: float | None = None
    recheck_due: bool = False
    # Frames are counted and weighed: a few large events must not hold as much memory as many small ones.
    max_bytes: int = 1 << 20
    buffered: int = 0
    # Events up to this sequence number were already seen (Last-Event-ID), whoever relays them.
    skip_through: int = 0
    id: int = field(default_factory=itertools.count(1).__next__)
    frames: deque[bytes] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False
    close_reason: str = ""
    # Kept by the response that writes this stream, read by the hub's watchdog: one timer for all clients
    # instead of two per delivery (creating and cancelling timers dominated the fan-out's CPU).
    writer: asyncio.Task[None] | None = None
    write_started: float | None = None  # loop time the write in progress began
    last_write: float = 0.0
    heartbeat_due: bool = False
    cut_off: bool = False

    def wants(self, event: Relayed) -> bool:
        if event.seq <= self.skip_through:
            return False
        if self.worker_ids is not None and event.worker_id not in self.worker_ids:
            return False
        if self.event_types is not None:
            return any(event.type.startswith(t[:-1]) if t.endswith("*") else event.type == t for t in self.event_types)
        return True

    def push(self, frame: bytes) -> bool:
        if self.closed:
            return False
        if len(self.frames) >= self.limit or self.buffered + len(frame) > self.max_bytes:
            self.close("too slow: its event buffer filled up")
            self.cut()
            return False
        self.frames.append(frame)
        self.buffered += len(frame)
        self.wake.set()
        return True

    def close(self, reason: str, final_frame: bytes | None = None) -> None:
        if self.closed:
            return
        if final_frame is not None:
            self.frames.append(final_frame)
        self.closed = True
        self.close_reason = reason
        self.wake.set()

    def end(self, reason: str) -> None:
        """End the stream because the credential it was opened with ended: an `ended` event, then the server
        closes it. A browser that reconnects is asked for its credential again."""
        self.close(reason, final_frame=sse_frame({"reason": reason, "reconnect": False}, event="ended"))

    def cut(self) -> None:
        """End the stream by aborting its connection, without writing what is left. The write in progress is
        interrupted (a client that stopped reading holds it on a full socket forever); without one, the stream
        stops before its next write."""
        if self.cut_off:
            return
        self.cut_off = True
        if self.write_started is not None and self.writer is not None:
            self.writer.cancel()

    def watch(self, now: float, heartbeat: float, write_timeout: float) -> None:
        """The hub's periodic check: cut off a write that hangs, ask a stream whose grant is due for a check to
        make it, and a quiet one for a heartbeat."""
        if self.write_started is not None:
            if now - self.write_started >= write_timeout:
                self.close(self.close_reason or "too slow: not reading")
                self.cut()
        elif self.recheck_at is not None and now >= self.recheck_at:
            self.recheck_at = None
            self.recheck_due = True
            self.wake.set()
        elif not self.frames and now - self.last_write >= heartbeat:
            self.heartbeat_due = True
            self.wake.set()

    async def next_chunk(self) -> bytes | Due:
        """Everything buffered, as one write; or what the hub asked for (a check of the grant, a heartbeat)."""
        while not self.frames and not self.closed:
            if self.recheck_due:
                self.recheck_due = False
                return "recheck"
            if self.heartbeat_due:
                self.heartbeat_due = False
                return "heartbeat"
            self.wake.clear()
            await self.wake.wait()
        chunk = b"".join(self.frames)
        self.frames.clear()
        self.buffered = 0
        return chunk


class Consumer(Protocol):
    """In-process state kept current by the outbox (the credential cache, the workers read model)."""

    async def load(self, session: AsyncSession) -> None:
        """Take the state as of the snapshot `session` reads, which the relay's position is current to: at start,
        and again after a reset (the relay fell behind events that were pruned meanwhile)."""

    async def apply(self, session: AsyncSession, events: Sequence[EventRow]) -> None:
        """New events in sequence order, before any SSE client gets them and before the relay's position moves
        past them (`Hub.reached`). `session` is the read the events came from; a consumer that needs more of the
        database reads it there. Raising leaves the position where it was: the same events come again (applying
        one twice must be harmless)."""


# The state a new client starts from (of the workers it asked for, or all when None), read in one session.
Snapshot = Callable[[AsyncSession, frozenset[str] | None], Awaitable[BaseModel]]


class Hub:
    def __init__(self, db: Database, notifier: Notifier, settings: Settings, snapshot: Snapshot) -> None:
        self.db = db
        self.notifier = notifier
        self.settings = settings
        self.schemas = schemas_url(settings)
        # Handed in by apps/: the state belongs to the slices, which sit above this package.
        self.snapshot = snapshot
        # Likewise what a stream was opened with, which auth tells; apps/ sets it once auth has started.
        self.access: Access = Open()
        self.position = 0
        self.consumers: list[Consumer] = []
        # Set, and replaced, whenever the position moves: what a read waiting for a sequence number waits on.
        self._moved = asyncio.Event()
        self.clients: set[Client] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.closing = False
        # At most half a client's buffer per read, so a client that keeps up can always drain between reads.
        self.batch = max(5, min(BATCH, settings.sse_client_queue_size // 2))

    async def start(self) -> None:
        await self.load()
        self._tasks = [
            asyncio.create_task(self._run(), name="sse-relay"),
            asyncio.create_task(self._watch(), name="sse-watchdog"),
        ]
        if self.notifier.redis is not None:
            self.notifier.on_down.append(self.wake)
            self._tasks.append(
                asyncio.create_task(self.notifier.listen(self.notifier.channel, self.wake), name="sse-notify")
            )
        log.info("event relay started at sequence %d (wake-ups: %s)", self.position, self._wakeups())

    async def load(self) -> None:
        """Start from the newest event, with every consumer's state read in the same snapshot."""
        async with self.db.snapshot() as session:
            position = (await session.execute(select(func.max(EventRow.seq)))).scalar() or 0
            for consumer in self.consumers:
                await consumer.load(session)
        self._advance(position)

    def _advance(self, position: int) -> None:
        self.position = position
        self._moved.set()
        self._moved = asyncio.Event()

    async def reached(self, seq: int, timeout: float) -> bool:
        """Wait until events up to `seq` have been applied here (read-your-writes); False if not within
        `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.position < seq:
            self.wake()  # the write may have been made here a moment ago, or elsewhere: read now, not at the next poll
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await self._moved.wait()
            if loop.time() >= deadline:
                return self.position >= seq
        return True

    def _wakeups(self) -> str:
        return "Redis pub/sub" if self.notifier.redis is not None else "database polling"

    def wake(self) -> None:
        self._wake.set()

    def end_streams(self, credential: str, reason: str) -> None:
        """End the streams opened with `credential` (see `Client.end`)."""
        ended = [client for client in self.clients if credential in client.credentials and not client.closed]
        for client in ended:
            client.end(reason)
        if ended:
            log.info("ended %d SSE stream(s): %s", len(ended), reason)

    def register(self, client: Client) -> int:
        """Add a client; returns the sequence number it will get live events after (atomically, since the
        relay runs on this same event loop)."""
        self.clients.add(client)
        SSE_CLIENTS.set(len(self.clients))
        return self.position

    def unregister(self, client: Client) -> None:
        self.clients.discard(client)
        SSE_CLIENTS.set(len(self.clients))
        if client.close_reason.startswith("too slow"):
            SSE_DROPPED.inc()
            log.info("SSE client %d disconnected: %s", client.id, client.close_reason)

    async def _run(self) -> None:
        while True:
            # With Redis up, nudges arrive instantly and polling is only a safety net.
            interval = (
                self.settings.relay_safety_poll_interval if self.notifier.up else self.settings.relay_poll_interval
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.catch_up()
            except Exception as exc:  # the relay must outlive database outages
                log.warning("event relay could not read the outbox: %s", exc)
                await asyncio.sleep(1)

    async def _watch(self) -> None:
        heartbeat = self.settings.sse_heartbeat_seconds
        write_timeout = self.settings.sse_write_timeout_seconds
        # A quarter of the shorter period: heartbeats and cut-offs come at most 25% late.
        tick = min(heartbeat, write_timeout) / 4
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            for client in list(self.clients):
                client.watch(now, heartbeat, write_timeout)

    async def catch_up(self) -> None:
        while True:
            async with self.db.session(write=False) as session:
                rows: Sequence[EventRow] = (
                    await session.scalars(
                        select(EventRow).where(EventRow.seq > self.position).order_by(EventRow.seq).limit(self.batch)
                    )
                ).all()
                if rows and rows[0].seq > self.position + 1 and await self._missed(session, rows[0].seq):
                    await self.reset()
                    return
                if not rows:
                    return
                for consumer in self.consumers:
                    await consumer.apply(session, rows)
            self.fan_out([to_relayed(row, self.schemas) for row in rows])
            if len(rows) < self.batch:
                return

    async def _missed(self, session: AsyncSession, first: int) -> bool:
        """Whether events after our position were pruned before we read them (a gap can also be a sequence
        number a rolled-back transaction used): then the consumers' state cannot be brought up to date."""
        oldest = (await session.execute(select(func.min(EventRow.seq)))).scalar()
        return oldest is not None and oldest == first and self.position > 0

    async def reset(self) -> None:
        """The relay fell further behind than the outbox keeps: consumers reload, and SSE clients, which missed
        events too, are closed so they reconnect and get a `reset` and a snapshot."""
        log.warning("event relay at sequence %d missed pruned events: reloading", self.position)
        await self.load()
        for client in list(self.clients):
            client.close("the relay missed pruned events")

    def fan_out(self, events: list[Relayed]) -> None:
        delivered = 0
        for client in list(self.clients):
            for event in events:
                if client.wants(event) and client.push(event.frame):
                    delivered += 1
        self._advance(events[-1].seq)
        EVENTS_RELAYED.inc(len(events))
        SSE_DELIVERIES.inc(delivered)

    async def shutdown(self) -> None:
        """Tell every client the server is going away and end their streams, so the server can exit."""
        if self.closing:
            return
        self.closing = True
        frame = sse_frame({"reason": "server shutting down", "reconnect": True}, event="shutdown")
        for client in list(self.clients):
            client.close("server shutdown", final_frame=frame)
        log.info("closed %d SSE streams for shutdown", len(self.clients))
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        # A stream ends once its shutdown event is written, but a client that stopped reading never takes it: its
        # write would block until uvicorn's graceful timeout ran out (10.5 s with 10 such clients). Writes that
        # block longer than SHUTDOWN_WRITE_SECONDS are cut off, which aborts their connections. Waiting for the
        # streams to end takes no longer than uvicorn would wait for them.
        loop = asyncio.get_running_loop()
        write_timeout = min(SHUTDOWN_WRITE_SECONDS, self.settings.sse_write_timeout_seconds)
        deadline = loop.time() + self.settings.shutdown_grace_seconds
        while self.clients and loop.time() < deadline:
            for client in list(self.clients):
                client.watch(loop.time(), math.inf, write_timeout)
            await asyncio.sleep(write_timeout / 4)


def parse_filter(values: list[str] | None) -> tuple[str, ...] | None:
    """`?worker_ids=a,b&worker_ids=c` -> ("a", "b", "c"); absent or empty -> no filter."""
    if not values:
        return None
    items = tuple(part.strip() for value in values for part in value.split(",") if part.strip())
    return items or None


async def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


HubDep = Annotated[Hub, Depends(_hub)]
