"""Appending events in the caller's transaction. The API relays them after commit (see `relay.py`)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from ..storage.db import EVENTS_WRITTEN, PENDING_EVENTS, SOURCE
from ..storage.models import EventRow
from .data import EventData


async def append(
    session: AsyncSession,
    data: EventData,
    *,
    type: str | None = None,
    subject: str | None = None,
    worker_id: str | None = None,
) -> EventRow:
    """Add an event to the transaction: a `type` event (None: the one type `data`'s model carries) whose data is
    `data` as plain JSON. It is inserted, and its `seq` assigned, just before the transaction commits, after every
    row change and under the outbox lock (`storage.db.OUTBOX_LOCK`): appending takes no lock, so a transaction
    can go on updating rows after its first event without risking a deadlock."""
    pending: list[EventRow] | None = session.info.get(PENDING_EVENTS)
    if pending is None:
        raise RuntimeError("events are appended in a write transaction opened by Database.session()")
    row = EventRow(
        type=data.event_type(type),
        source=session.info.get(SOURCE, "cml-cloud-manager"),
        subject=subject if subject is not None else worker_id,
        worker_id=worker_id,
        time=datetime.now(UTC),
        data=data.model_dump(mode="json"),
    )
    pending.append(row)
    session.info[EVENTS_WRITTEN] = True
    return row
