"""Server-side browser sessions. The cookie carries a random id; the database keeps only its hash.

A session opened with an API token records that token's hash and lives only as long as the token does: revoking
the token deletes its sessions, and a session whose token is gone (from the database or from AUTH_TOKENS_FILE)
is refused. An OIDC session keeps the provider's refresh and ID tokens encrypted (`keys.SessionCipher`).

A session that ends before it expires (logout, a refresh the provider refuses) appends `auth.session.ended`:
every API replica forgets what it remembers (`cache`) and ends the SSE streams opened with it (`credentials`).
"""

from __future__ import annotations

import secrets
from collections.abc import Container
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..events import outbox
from ..events.data import EventData
from ..storage.db import Database
from ..storage.models import ApiTokenRow, SessionRow
from .keys import SessionCipher
from .roles import Principal, Role, parse_roles
from .tokens import digest

COOKIE = "cml_session"
ENDED = "auth.session.ended"
# An OIDC session is refreshed this long before its access token expires.
REFRESH_MARGIN = timedelta(seconds=60)


def ref(id_sha256: str) -> str:
    """The name a session goes by outside its table (events, principals): derived from its id's hash, from which
    neither the hash nor the cookie can be told back."""
    return digest(f"session-ref:{id_sha256}")[:16]


@dataclass(frozen=True)
class Live:
    """A session that may be used, and the database id of the API token it was opened with, if any."""

    row: SessionRow
    token_id: str | None


@dataclass(frozen=True)
class ProviderTokens:
    """What an OIDC session keeps from the provider's token answer, in clear (encrypted when stored)."""

    refresh_token: str | None
    id_token: str | None
    access_expires_at: datetime


async def create(
    db: Database,
    *,
    subject: str,
    roles: frozenset[Role],
    ttl: timedelta,
    token_sha256: str | None = None,
    provider: ProviderTokens | None = None,
    cipher: SessionCipher | None = None,
) -> tuple[str, SessionRow]:
    if provider is not None and cipher is None:
        raise ValueError("provider tokens are only stored encrypted")
    session_id = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    row = SessionRow(
        id_sha256=digest(session_id),
        subject=subject,
        roles={"roles": sorted(roles)},
        csrf_token=secrets.token_urlsafe(24),
        token_sha256=token_sha256,
        created_at=now,
        expires_at=now + ttl,
    )
    if provider is not None and cipher is not None:
        row.refresh_token = cipher.encrypt(provider.refresh_token)
        row.id_token = cipher.encrypt(provider.id_token)
        row.access_expires_at = provider.access_expires_at
    async with db.session() as session:
        session.add(row)
    return session_id, row


async def load(db: Database, session_id: str, file_tokens: Container[str]) -> Live | None:
    """The live session behind a cookie value, or None (unknown, expired, or its API token is gone)."""
    return await load_hashed(db, digest(session_id), file_tokens)


async def load_hashed(db: Database, id_sha256: str, file_tokens: Container[str]) -> Live | None:
    statement = (
        select(SessionRow, ApiTokenRow.id)
        .outerjoin(ApiTokenRow, ApiTokenRow.sha256 == SessionRow.token_sha256)
        .where(SessionRow.id_sha256 == id_sha256)
    )
    async with db.session(write=False) as session:
        found = (await session.execute(statement)).first()
    if found is None:
        return None
    row, token_id = found
    if row.expires_at <= datetime.now(UTC):
        return None
    if row.token_sha256 is not None and token_id is None and row.token_sha256 not in file_tokens:
        return None
    return Live(row, token_id)


def principal(row: SessionRow, *, token_id: str | None = None) -> Principal:
    recheck_at = row.expires_at
    if row.refresh_token and row.access_expires_at is not None:
        recheck_at = min(recheck_at, row.access_expires_at - REFRESH_MARGIN)
    return Principal(
        row.subject,
        parse_roles(row.roles.get("roles")),
        "session",
        row.csrf_token,
        token_id=token_id,
        session=ref(row.id_sha256),
        expires_at=row.expires_at,
        recheck_at=recheck_at,
    )


async def refreshed(
    db: Database,
    row: SessionRow,
    *,
    roles: frozenset[Role],
    provider: ProviderTokens,
    cipher: SessionCipher,
) -> SessionRow:
    """Store what a refresh returned. Tokens the provider did not renew are re-encrypted with the first key, so a
    refresh also moves a session off a key being retired."""
    values = {
        "roles": {"roles": sorted(roles)},
        "refresh_token": cipher.encrypt(provider.refresh_token) or cipher.rotate(row.refresh_token),
        "id_token": cipher.encrypt(provider.id_token) or cipher.rotate(row.id_token),
        "access_expires_at": provider.access_expires_at,
    }
    async with db.session() as session:
        current = await session.get(SessionRow, row.id_sha256)
        if current is not None:
            for key, value in values.items():
                setattr(current, key, value)
    for key, value in values.items():
        setattr(row, key, value)
    return row


async def end_unless_refreshed(db: Database, row: SessionRow, file_tokens: Container[str]) -> Live | None:
    """End a session whose refresh failed, unless a concurrent request refreshed it meanwhile (its refresh token
    changed): then return that fresher session."""
    async with db.session() as session:
        result = await session.execute(
            delete(SessionRow).where(
                SessionRow.id_sha256 == row.id_sha256, SessionRow.refresh_token == row.refresh_token
            )
        )
        if result.rowcount:  # type: ignore[attr-defined]
            await _ended(session, row, "the provider refused to refresh it")
    if result.rowcount:  # type: ignore[attr-defined]
        return None
    return await load_hashed(db, row.id_sha256, file_tokens)


async def end(db: Database, session_id: str) -> SessionRow | None:
    async with db.session() as session:
        row = await session.get(SessionRow, digest(session_id))
        if row is not None:
            await session.delete(row)
            await _ended(session, row, "logged out")
        return row


class SessionEnded(EventData):
    """A browser session ended (logout): API replicas forget the credentials they remember (`cache`) and end the
    session's SSE streams (`credentials`). No secret, and not the session's hash: which session (`ref`), whose,
    and why."""

    types: ClassVar[tuple[str, ...]] = (ENDED,)

    session: str
    subject: str
    reason: str


async def _ended(session: AsyncSession, row: SessionRow, reason: str) -> None:
    ended = SessionEnded(session=ref(row.id_sha256), subject=row.subject, reason=reason)
    await outbox.append(session, ended, subject=row.subject)
