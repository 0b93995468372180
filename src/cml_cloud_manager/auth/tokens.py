"""Token mode: static bearer tokens, SHA-256 at rest, from a file or the database.

With none configured, the first API start generates an admin token, writes it to AUTH_ADMIN_TOKEN_FILE (0600) and
says where it is; only its hash is stored, in the database, so every API replica accepts it.

Tokens in the database are listed and revoked with `cml-cloud-manager token list|revoke` or `/api/tokens`.
Revoking deletes the token and the browser sessions opened with it in one transaction, so every API replica
refuses both at once, and appends `auth.token.revoked` to the outbox, which ends the SSE streams opened with
either on every replica (see `credentials`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, Field
from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError

from ..config import Settings
from ..errors import Conflict, NotFound
from ..events import outbox
from ..events.data import EventData
from ..storage.db import Database
from ..storage.models import ApiTokenRow, SessionRow
from .roles import Role

log = logging.getLogger(__name__)
GENERATED = "generated-admin"
REVOKED = "auth.token.revoked"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "cml_" + secrets.token_urlsafe(32)


def load_file(path: Path) -> dict[str, tuple[str, Role]]:
    """Lines of `<role> <name> <sha256 hex>`; `#` starts a comment. Returns sha256 -> (name, role)."""
    tokens: dict[str, tuple[str, Role]] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3 or parts[0] not in Role._value2member_map_ or len(parts[2]) != 64:
            raise ValueError(f"{path}:{number}: expected '<admin|operator|viewer> <name> <sha256 hex>'")
        tokens[parts[2].lower()] = (parts[1], Role(parts[0]))
    return tokens


@dataclass(frozen=True)
class KnownToken:
    name: str
    role: Role
    id: str | None  # its database id; None for a token from AUTH_TOKENS_FILE


async def lookup(db: Database, file_tokens: dict[str, tuple[str, Role]], token: str) -> KnownToken | None:
    hashed = digest(token)
    if hashed in file_tokens:
        return KnownToken(*file_tokens[hashed], id=None)
    return await lookup_hashed(db, hashed)


async def lookup_hashed(db: Database, hashed: str) -> KnownToken | None:
    """A database token by its SHA-256."""
    async with db.session(write=False) as session:
        row = (await session.scalars(select(ApiTokenRow).where(ApiTokenRow.sha256 == hashed))).first()
    return KnownToken(row.name, Role(row.role), row.id) if row else None


async def create(db: Database, *, name: str, role: Role) -> str:
    """A new token for `name`; returns the plaintext, which is never stored."""
    token = new_token()
    async with db.session() as session:
        session.add(ApiTokenRow(name=name, role=role.value, sha256=digest(token), created_at=datetime.now(UTC)))
    return token


async def bootstrap(db: Database, settings: Settings, file_tokens: dict[str, tuple[str, Role]]) -> None:
    """Make sure somebody can log in: generate the first admin token if no token exists anywhere."""
    if file_tokens:
        return
    async with db.session(write=False) as session:
        if (await session.execute(select(func.count()).select_from(ApiTokenRow))).scalar_one():
            return
    try:
        token = await create(db, name=GENERATED, role=Role.ADMIN)
    except IntegrityError:
        return  # another API replica generated it a moment ago
    path = settings.auth_admin_token_file
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    log.warning("No API tokens were configured: generated an admin token in %s (mode 0600)", path.resolve())


class TokenOut(BaseModel):
    id: str | None = Field(description="Database id; null for a token from AUTH_TOKENS_FILE")
    name: str
    role: Role
    source: Literal["database", "file"]
    created_at: datetime | None
    sessions: int = Field(description="Browser sessions currently open with this token")


class TokenRevoked(EventData):
    """An API token was revoked, and its browser sessions ended: the answer to a revocation, and the data of its
    `auth.token.revoked` event (no secret in either)."""

    types: ClassVar[tuple[str, ...]] = (REVOKED,)

    id: str
    name: str
    role: Role
    sessions_ended: int
    revoked_by: str


class TokenNotFound(NotFound):
    code = "token_not_found"


class TokenInFile(Conflict):
    code = "token_in_file"


async def list_tokens(db: Database, file_tokens: dict[str, tuple[str, Role]]) -> list[TokenOut]:
    async with db.session(write=False) as session:
        rows = (await session.scalars(select(ApiTokenRow).order_by(ApiTokenRow.name))).all()
        counts = await session.execute(
            select(SessionRow.token_sha256, func.count())
            .where(SessionRow.token_sha256.is_not(None), SessionRow.expires_at > datetime.now(UTC))
            .group_by(SessionRow.token_sha256)
        )
        open_sessions = {str(sha): int(count) for sha, count in counts.all()}
    found = [
        TokenOut(
            id=row.id,
            name=row.name,
            role=Role(row.role),
            source="database",
            created_at=row.created_at,
            sessions=open_sessions.get(row.sha256, 0),
        )
        for row in rows
    ]
    found += [
        TokenOut(id=None, name=name, role=role, source="file", created_at=None, sessions=open_sessions.get(sha, 0))
        for sha, (name, role) in sorted(file_tokens.items(), key=lambda item: item[1][0])
    ]
    return found


async def revoke(db: Database, file_tokens: dict[str, tuple[str, Role]], ref: str, *, by: str) -> TokenRevoked:
    """Delete the token named or numbered `ref` and end its sessions, in one transaction."""
    async with db.session() as session:
        rows = (
            await session.scalars(
                select(ApiTokenRow).where(or_(ApiTokenRow.id == ref, ApiTokenRow.name == ref)).with_for_update()
            )
        ).all()
        row = next((r for r in rows if r.id == ref), rows[0] if rows else None)
        if row is None:
            if any(name == ref for name, _ in file_tokens.values()):
                raise TokenInFile(
                    f"Token {ref!r} is defined in AUTH_TOKENS_FILE: remove its line there and restart the API "
                    "replicas (its browser sessions end with it)"
                )
            raise TokenNotFound(f"No token is named {ref!r} or has that id; `token list` shows them")
        await session.execute(delete(ApiTokenRow).where(ApiTokenRow.id == row.id))
        ended = await session.execute(delete(SessionRow).where(SessionRow.token_sha256 == row.sha256))
        revoked = TokenRevoked(
            id=row.id,
            name=row.name,
            role=Role(row.role),
            sessions_ended=int(ended.rowcount),  # type: ignore[attr-defined]
            revoked_by=by,
        )
        await outbox.append(session, revoked, subject=row.id)
    log.warning("token %s (%s) revoked by %s; %d session(s) ended", row.name, row.role, by, revoked.sessions_ended)
    return revoked
