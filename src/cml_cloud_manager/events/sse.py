"""`GET /api/events/stream`: live events, replay after `Last-Event-ID`, heartbeats, shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import Receive, Scope, Send

from ..apps.deps import DatabaseDep, HubDep, SettingsDep
from ..apps.server_send import SERVER_SEND
from ..auth.guard import needs
from ..auth.roles import Role
from ..errors import BadRequest
from ..storage.db import Database
from ..storage.models import EventRow
from .cloudevents import sse_frame
from .relay import BATCH, Client, parse_filter, to_relayed

log = logging.getLogger(__name__)


class EventStreamResponse(StreamingResponse):
    """A stream whose writes can be cut off: when the client stops reading, the server's send blocks on a full
    socket, so the hub's "too slow" verdict (or its write watchdog) must interrupt the send itself. The response
    is then left incomplete, which makes the server close the connection and free its buffers."""

    def __init__(self, content: AsyncIterator[bytes], client: Client) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"},
        )
        self.client = client
        self.content = content
        self.body_send: Send | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.body_send = scope.get(SERVER_SEND)
        await super().__call__(scope, receive, send)

    async def stream_response(self, send: Send) -> None:
        client = self.client
        loop = asyncio.get_running_loop()
        client.writer = asyncio.current_task()
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        send_body = self.body_send or send
        client.last_write = loop.time()
        async for chunk in self.content:
            client.write_started = loop.time()
            try:
                await send_body({"type": "http.response.body", "body": chunk, "more_body": True})
            except asyncio.CancelledError:
                if not client.cut_off:
                    raise
                if client.writer is not None:
                    client.writer.uncancel()
                log.info("cutting off SSE client %d: %s", client.id, client.close_reason)
                await self.content.aclose()  # type: ignore[attr-defined]
                return
            finally:
                client.write_started = None
            client.last_write = loop.time()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


router = APIRouter(tags=["events"], dependencies=needs(Role.VIEWER))

Snapshot = Callable[[AsyncSession, frozenset[str] | None], Awaitable[dict[str, Any]]]


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


async def _replay(db: Database, client: Client, after: int, until: int) -> AsyncIterator[bytes]:
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
        frames = [event.frame for event in map(to_relayed, rows) if client.wants(event)]
        if frames:
            yield b"".join(frames)
        after = rows[-1].seq


@router.get(
    "/api/events/stream",
    summary="Server-Sent Events stream of every state change",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
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
    snapshot: Snapshot = request.app.state.snapshot
    async with db.session(write=False) as session:
        oldest, newest = (await session.execute(select(func.min(EventRow.seq), func.max(EventRow.seq)))).one()
    # This replica's relay may lag the database: ids it has not relayed yet still count as known.
    position = hub.register(client)

    async def body() -> AsyncIterator[bytes]:
        try:
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
                async with db.session(write=False) as session:
                    yield sse_frame(await snapshot(session, client.worker_ids), event="snapshot")
            else:
                async for replayed in _replay(db, client, after, position):
                    yield replayed
            while True:
                chunk = await client.next_chunk()
                if chunk is None:
                    yield b": heartbeat\n\n"
                    continue
                yield chunk
                if client.closed:
                    return
        finally:
            hub.unregister(client)

    if hub.closing:
        client.close("server shutdown")
    return EventStreamResponse(body(), client)
