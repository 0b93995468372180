"""Server-side browser sessions. The cookie carries a random id; the database keeps only its hash."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from ..storage.db import Database
from ..storage.models import SessionRow
from .roles import Principal, Role, parse_roles
from .tokens import digest

COOKIE = "cml_session"


async def create(
    db: Database,
    *,
    subject: str,
    roles: frozenset[Role],
    ttl: timedelta,
    oidc: dict[str, Any] | None = None,
) -> tuple[str, SessionRow]:
    session_id = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    row = SessionRow(
        id_sha256=digest(session_id),
        subject=subject,
        roles={"roles": sorted(roles)},
        csrf_token=secrets.token_urlsafe(24),
        refresh_token=(oidc or {}).get("refresh_token"),
        id_token=(oidc or {}).get("id_token"),
        access_expires_at=(oidc or {}).get("access_expires_at"),
        created_at=now,
        expires_at=now + ttl,
    )
    async with db.session() as session:
        session.add(row)
    return session_id, row


async def load(db: Database, session_id: str) -> SessionRow | None:
    async with db.session(write=False) as session:
        row = await session.get(SessionRow, digest(session_id))
    if row is None or row.expires_at <= datetime.now(UTC):
        return None
    return row


def principal(row: SessionRow) -> Principal:
    return Principal(row.subject, parse_roles(row.roles.get("roles")), "session", row.csrf_token)


async def update(db: Database, row: SessionRow, **values: Any) -> None:
    async with db.session() as session:
        current = await session.get(SessionRow, row.id_sha256)
        if current is not None:
            for key, value in values.items():
                setattr(current, key, value)


async def end(db: Database, session_id: str) -> SessionRow | None:
    async with db.session() as session:
        row = await session.get(SessionRow, digest(session_id))
        if row is not None:
            await session.delete(row)
        return row
