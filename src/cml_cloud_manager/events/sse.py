"""`GET /api/events/stream`: live events, replay after `Last-Event-ID`, heartbeats, shutdown.

apps/ includes the route through `router(guard)`: who may read the stream is decided by auth, which sits above
this package (it appends events), and the snapshot a new client starts from comes with the hub. So does what a
stream was opened with (`hub.access`, see `grants`): a stream outlives the request that opened it, and ends when
that credential ends (`Hub.end_streams`), expires, or is refused when checked again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select
from starlette.types import Receive, Scope, Send

from ..errors import AppError, BadRequest
from ..storage.db import Database
from ..storage.models import EventRow
from ..web.deps import DatabaseDep, SettingsDep
from ..web.server_send import SERVER_SEND, abort_connection
from .cloudevents import sse_frame
from .grants import Access, Grant
from .relay import BATCH, Client, Hub, HubDep, parse_filter, to_relayed

log = logging.getLogger(__name__)
# When a stream's grant cannot be checked (the database or the identity provider does not answer), it is checked
# again this much later; meanwhile the stream goes on, as a request would get no verdict either.
RECHECK_RETRY = timedelta(seconds=30)


class EventStreamResponse(StreamingResponse):
    """A stream that can be cut off: when the client stops reading, the server's send blocks on a full socket,
    so the hub's "too slow" verdict (or its write watchdog) must interrupt the send itself. The connection is
    then aborted, which closes the socket and frees its buffers (see `abort_connection`)."""

    def __init__(self, content: AsyncIterator[bytes], client: Client, hub: Hub) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"},
        )
        self.client = client
        self.hub = hub
        self.content = content
        self.body_send: Send | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.body_send = scope.get(SERVER_SEND)
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Only once the response has ended: the watchdog (and the shutdown) must see every write, the last
            # ones included.
            self.hub.unregister(self.client)

    async def stream_response(self, send: Send) -> None:
        client = self.client
        loop = asyncio.get_running_loop()
        client.writer = asyncio.current_task()
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        send_body = self.body_send or send
        client.last_write = loop.time()
        # Each write is marked in `write_started` for the watchdog: the end of the response too, since the
        # server's send waits for room on the socket before it writes.
        try:
            async for chunk in self.content:
                if client.cut_off:
                    break
                client.write_started = loop.time()
                await send_body({"type": "http.response.body", "body": chunk, "more_body": True})
                client.write_started = None
                client.last_write = loop.time()
            if not client.cut_off:
                client.write_started = loop.time()
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
        except asyncio.CancelledError:
            if not client.cut_off:
                raise
            if client.writer is not None:
                client.writer.uncancel()
        finally:
            client.write_started = None
        log.info("cutting off SSE client %d: %s", client.id, client.close_reason)
        if self.body_send is None or not abort_connection(self.body_send):
            log.warning("SSE client %d: cannot abort its connection, the server closes it when it can", client.id)
        await self.content.aclose()  # type: ignore[attr-defined]


def parse_last_event_id(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(
            f"Last-Event-ID must be an event sequence number (a non-negative integer), got {raw[:40]!r}"
        ) from None
    if value < 0:
        raise BadRequest(f"Last-Event-ID must be a non-negative integer, got {value}")
    return value


async def _replay(db: Database, client: Client, after: int, until: int, schemas: str) -> AsyncIterator[bytes]:
    """Events in (after, until], in order; live events after `until` are already queued on the client."""
    while after < until:
        async with db.session(write=False) as session:
            rows = (
                await session.scalars(
                    select(EventRow)
                    .where(EventRow.seq > after, EventRow.seq <= until)
                    .order_by(EventRow.seq)
                    .limit(BATCH)
                )
            ).all()
        if not rows:
            return
        frames = [event.frame for event in (to_relayed(row, schemas) for row in rows) if client.wants(event)]
        if frames:
            yield b"".join(frames)
        after = rows[-1].seq


class Ended(Exception):
    """A stream's grant, checked again, no longer holds: the stream ends, for `reason` (in words)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _loop_time(at: datetime | None) -> float | None:
    if at is None:
        return None
    return asyncio.get_running_loop().time() + (at - datetime.now(UTC)).total_seconds()


async def _check_again(access: Access, request: Request, grant: Grant) -> Grant:
    """The stream's grant as of now; raises `Ended` when the stream must end."""
    now = datetime.now(UTC)
    if grant.expires_at is not None and now >= grant.expires_at:
        raise Ended("its credential expired")
    try:
        return await access.check(request)
    except AppError as exc:
        raise Ended(f"its credential was refused: {exc.message}") from None
    except Exception as exc:
        log.warning(
            "could not check the credential of %s's SSE stream (%s); again in %s", grant.who, exc, RECHECK_RETRY
        )
        return replace(grant, recheck_at=now + RECHECK_RETRY)


async def stream(
    request: Request,
    db: DatabaseDep,
    hub: HubDep,
    settings: SettingsDep,
    worker_ids: Annotated[list[str] | None, Query(description="Only events of these workers (comma list)")] = None,
    event_types: Annotated[
        list[str] | None, Query(description="Only these event types; `worker.*` matches a prefix")
    ] = None,
    last_event_id: Annotated[str | None, Header(description="Resume after this sequence number")] = None,
    last_event_id_query: Annotated[
        str | None, Query(alias="lastEventId", description="Same as the Last-Event-ID header")
    ] = None,
) -> StreamingResponse:
    after = parse_last_event_id(last_event_id if last_event_id is not None else last_event_id_query)
    ids = parse_filter(worker_ids)
    client = Client(
        worker_ids=frozenset(ids) if ids else None,
        event_types=parse_filter(event_types),
        limit=settings.sse_client_queue_size,
        max_bytes=settings.sse_client_buffer_bytes,
        skip_through=after or 0,
    )
    access = hub.access
    async with db.session(write=False) as session:
        oldest, newest = (await session.execute(select(func.min(EventRow.seq), func.max(EventRow.seq)))).one()
    # This replica's relay may lag the database: ids it has not relayed yet still count as known.
    position = hub.register(client)
    # The guard let this request in a moment ago, but an event ending its credential that the relay read since
    # would not reach the client: check now that every later one will, and take what the stream was opened with.
    try:
        grant = await access.check(request)
    except BaseException:
        hub.unregister(client)
        raise
    client.credentials = grant.credentials
    client.recheck_at = _loop_time(grant.recheck_at)

    async def body() -> AsyncIterator[bytes]:
        current = grant
        reset = after is not None and (after > (newest or 0) or (oldest is not None and after < oldest - 1))
        # The id lets a browser that drops right after this frame resume from the right place: after what
        # it already had when resuming, else after the snapshot's position.
        resume_from = after if after is not None and not reset else position
        yield b"retry: 3000\n" + sse_frame(
            {"client_id": client.id, "sequence": position, "resuming_after": after},
            event="connected",
            seq=resume_from,
        )
        if reset:
            yield sse_frame(
                {"reason": "Last-Event-ID is outside the retained events; refetch state", "last": after},
                event="reset",
            )
        if after is None or reset:
            # Read, then write: a client slow to take the snapshot must not hold a pooled connection meanwhile.
            async with db.session(write=False) as session:
                state = await hub.snapshot(session, client.worker_ids)
            yield sse_frame(state.model_dump(mode="json"), event="snapshot")
        else:
            async for replayed in _replay(db, client, after, position, hub.schemas):
                yield replayed
        while True:
            chunk = await client.next_chunk()
            if chunk == "heartbeat":
                yield b": heartbeat\n\n"
                continue
            if chunk == "recheck":
                try:
                    current = await _check_again(access, request, current)
                    client.recheck_at = _loop_time(current.recheck_at)
                except Ended as ended:
                    log.info("ending SSE client %d of %s: %s", client.id, current.who, ended.reason)
                    client.end(ended.reason)
                continue
            yield chunk
            if client.closed:
                return

    if hub.closing:
        client.close("server shutdown")
    return EventStreamResponse(body(), client, hub)


def router(guard: Sequence[Any]) -> APIRouter:
    """The stream's route behind `guard`, the dependencies that check who may read it."""
    events = APIRouter(tags=["events"], dependencies=list(guard))
    events.add_api_route(
        "/api/events/stream",
        stream,
        methods=["GET"],
        summary="Server-Sent Events stream of every state change",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    return events
