"""System settings: runtime overrides of env settings, stored in the database and read by every process."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..events import outbox
from ..jobs.scheduler import Override
from ..storage.models import SystemSettingRow
from .events import SettingsUpdated


async def get_all(session: AsyncSession) -> dict[str, Override]:
    rows = (await session.scalars(select(SystemSettingRow).order_by(SystemSettingRow.key))).all()
    return {row.key: row.value for row in rows}


async def update(session: AsyncSession, changes: dict[str, Override | None], *, actor: str) -> dict[str, Override]:
    """Upsert; a `None` value removes the override so the env setting applies again."""
    now = datetime.now(UTC)
    for key, value in changes.items():
        row = await session.get(SystemSettingRow, key)
        if value is None:
            if row is not None:
                await session.delete(row)
        elif row is None:
            session.add(SystemSettingRow(key=key, value=value, updated_at=now))
        else:
            row.value = value
            row.updated_at = now
    await outbox.append(session, SettingsUpdated(changes=changes, by=actor))
    await session.flush()
    return await get_all(session)
