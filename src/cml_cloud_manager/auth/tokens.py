"""Token mode: static bearer tokens, SHA-256 at rest, from a file or the database.

With none configured, the first API start generates an admin token, writes it to AUTH_ADMIN_TOKEN_FILE (0600) and
says where it is; only its hash is stored, in the database, so every API replica accepts it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..config import Settings
from ..storage.db import Database
from ..storage.models import ApiTokenRow
from .roles import Role

log = logging.getLogger(__name__)
GENERATED = "generated-admin"


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


async def lookup(db: Database, file_tokens: dict[str, tuple[str, Role]], token: str) -> tuple[str, Role] | None:
    hashed = digest(token)
    if hashed in file_tokens:
        return file_tokens[hashed]
    async with db.session(write=False) as session:
        row = (await session.scalars(select(ApiTokenRow).where(ApiTokenRow.sha256 == hashed))).first()
    return (row.name, Role(row.role)) if row else None


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
