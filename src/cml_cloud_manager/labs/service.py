"""Lab records: one per (worker, CML lab id), kept in step with what CML reports."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..cml.types import LabDetails
from ..errors import NotFound
from ..events import outbox
from ..storage.models import LabRow
from .events import LabChanged, LabDeleted, LabStateChanged
from .schemas import LabsSynced


class LabNotFound(NotFound):
    code = "lab_not_found"


async def list_for(session: AsyncSession, worker_id: str) -> list[LabRow]:
    query = select(LabRow).where(LabRow.worker_id == worker_id).order_by(LabRow.title, LabRow.cml_lab_id)
    return list((await session.scalars(query)).all())


async def get(session: AsyncSession, worker_id: str, lab_id: str) -> LabRow:
    """By our id or by CML's lab id."""
    query = select(LabRow).where(LabRow.worker_id == worker_id, (LabRow.id == lab_id) | (LabRow.cml_lab_id == lab_id))
    row = (await session.scalars(query)).first()
    if row is None:
        raise LabNotFound(f"No lab '{lab_id}' on worker '{worker_id}'")
    return row


async def set_state(session: AsyncSession, row: LabRow, state: str, *, reason: str) -> bool:
    if row.state == state:
        return False
    previous, row.state = row.state, state
    now = datetime.now(UTC)
    row.updated_at = now
    states = [*row.history.get("states", []), {"state": state, "at": now.isoformat(), "reason": reason}][-20:]
    row.history = {**row.history, "states": states}
    changed = LabStateChanged(lab_id=row.id, cml_lab_id=row.cml_lab_id, title=row.title, previous=previous, state=state)
    await outbox.append(session, changed, worker_id=row.worker_id)
    return True


async def sync(session: AsyncSession, worker_id: str, labs: list[LabDetails]) -> LabsSynced:
    """Upsert what CML has, delete what it no longer has."""
    existing = {row.cml_lab_id: row for row in await list_for(session, worker_id)}
    now = datetime.now(UTC)
    added = updated = 0
    for lab in labs:
        row = existing.pop(lab.id, None)
        fields = {
            "title": lab.title,
            "description": lab.description,
            "owner": lab.owner,
            "node_count": lab.node_count,
            "link_count": lab.link_count,
            "cml_created_at": lab.created,
            "cml_modified_at": lab.modified,
        }
        if row is None:
            row = LabRow(
                worker_id=worker_id, cml_lab_id=lab.id, state=lab.state.value, created_at=now, updated_at=now, **fields
            )
            row.history = {"states": [{"state": lab.state.value, "at": now.isoformat(), "reason": "discovered"}]}
            session.add(row)
            await session.flush()
            await outbox.append(session, LabChanged.model_validate(row), type="lab.created", worker_id=worker_id)
            added += 1
            continue
        dirty = {k: v for k, v in fields.items() if getattr(row, k) != v}
        for key, value in dirty.items():
            setattr(row, key, value)
        if await set_state(session, row, lab.state.value, reason="observed in CML") or dirty:
            row.updated_at = now
            if dirty:
                await outbox.append(session, LabChanged.model_validate(row), type="lab.updated", worker_id=worker_id)
            updated += 1
    for row in existing.values():
        await outbox.append(session, LabDeleted(lab_id=row.id, cml_lab_id=row.cml_lab_id), worker_id=worker_id)
        await session.delete(row)
    return LabsSynced(added=added, updated=updated, removed=len(existing))
