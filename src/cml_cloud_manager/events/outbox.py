"""Appending events in the caller's transaction. The API relays them after commit (see `relay.py`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..storage.db import EVENTS_WRITTEN, SOURCE
from ..storage.models import EventRow

# Serialises event-writing transactions on PostgreSQL so sequence numbers commit in order and the relay,
# which reads "everything after the last seq I saw", can never skip a late-committing lower number.
_PG_OUTBOX_LOCK = 0x434D4C02


async def append(
    session: AsyncSession,
    type: str,
    data: dict[str, Any],
    *,
    subject: str | None = None,
    worker_id: str | None = None,
) -> EventRow:
    if not session.info.get(EVENTS_WRITTEN):
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(select(func.pg_advisory_xact_lock(_PG_OUTBOX_LOCK)))
        session.info[EVENTS_WRITTEN] = True
    row = EventRow(
        type=type,
        source=session.info.get(SOURCE, "cml-cloud-manager"),
        subject=subject if subject is not None else worker_id,
        worker_id=worker_id,
        time=datetime.now(UTC),
        data=data,
    )
    session.add(row)
    return row
