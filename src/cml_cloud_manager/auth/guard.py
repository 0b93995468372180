"""Resolving the caller of a request, and the `require(role)` dependency every endpoint declares."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import Depends, Request

from ..config import Settings
from ..storage.db import Database
from ..storage.models import SessionRow
from . import sessions, tokens
from .oidc import OIDCProvider
from .ratelimit import LoginLimiter
from .roles import Forbidden, NotAuthenticated, Principal, Role

ANONYMOUS = Principal("anonymous", frozenset({Role.ADMIN}), "none")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
REFRESH_MARGIN = timedelta(seconds=60)


class Authenticator:
    """One per API process: knows the mode and how to turn a request into a Principal."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.mode = settings.auth_mode
        self.file_tokens = tokens.load_file(Path(settings.auth_tokens_file)) if settings.auth_tokens_file else {}
        self.oidc = OIDCProvider(settings) if self.mode == "oidc" else None
        self.limiter = LoginLimiter(settings.login_attempts_per_minute)

    async def start(self) -> None:
        if self.mode == "token":
            await tokens.bootstrap(self.db, self.settings, self.file_tokens)

    async def aclose(self) -> None:
        if self.oidc is not None:
            await self.oidc.aclose()

    async def principal(self, request: Request) -> Principal:
        cached: Principal | None = getattr(request.state, "principal", None)
        if cached is not None:
            return cached
        found = await self._resolve(request)
        request.state.principal = found
        return found

    async def _resolve(self, request: Request) -> Principal:
        if self.mode == "none":
            return ANONYMOUS
        header = request.headers.get("authorization", "")
        if header:
            scheme, _, credential = header.partition(" ")
            if scheme.lower() != "bearer" or not credential.strip():
                raise NotAuthenticated("Use 'Authorization: Bearer <token>'")
            return await self._bearer(credential.strip())
        session_id = request.cookies.get(sessions.COOKIE)
        if session_id:
            row = await sessions.load(self.db, session_id)
            if row is not None:
                return sessions.principal(await self._refreshed(row))
        raise NotAuthenticated("Log in first: send a bearer token or sign in at /auth/login")

    async def _bearer(self, credential: str) -> Principal:
        if self.oidc is not None:
            identity = await self.oidc.verify(credential)
            return Principal(identity.subject, identity.roles, "bearer")
        found = await tokens.lookup(self.db, self.file_tokens, credential)
        if found is None:
            raise NotAuthenticated("Unknown bearer token")
        name, role = found
        return Principal(name, frozenset({role}), "bearer")

    async def _refreshed(self, row: SessionRow) -> SessionRow:
        """Keep the provider session alive: refresh shortly before the access token expires, taking the roles
        the provider grants now."""
        if self.oidc is None or not row.refresh_token or row.access_expires_at is None:
            return row
        if row.access_expires_at - datetime.now(UTC) > REFRESH_MARGIN:
            return row
        answer = await self.oidc.refresh(row.refresh_token)
        identity = await self.oidc.verify(answer["access_token"])
        values = {
            "roles": {"roles": sorted(identity.roles)},
            "refresh_token": answer.get("refresh_token", row.refresh_token),
            "access_expires_at": datetime.now(UTC) + timedelta(seconds=int(answer.get("expires_in", 300))),
        }
        await sessions.update(self.db, row, **values)
        for key, value in values.items():
            setattr(row, key, value)
        return row


class RoleRequirement:
    """`Depends(require(Role.X))`. Also enforces CSRF on cookie-authenticated writes. Kept as a class so a test
    can check that every route declares one."""

    def __init__(self, role: Role) -> None:
        self.role = role

    async def __call__(self, request: Request) -> Principal:
        authenticator: Authenticator = request.app.state.authenticator
        principal = await authenticator.principal(request)
        if principal.via == "session" and request.method not in SAFE_METHODS:
            sent = request.headers.get("x-csrf-token", "")
            if not principal.csrf_token or not hmac.compare_digest(sent, principal.csrf_token):
                raise Forbidden("Missing or wrong X-CSRF-Token header (take it from GET /auth/me)")
        if not principal.allows(self.role):
            have = ", ".join(sorted(principal.roles)) or "no role"
            raise Forbidden(f"This needs the {self.role} role; {principal.name} has {have}")
        return principal


_REQUIREMENTS = {role: RoleRequirement(role) for role in Role}


def require(role: Role) -> RoleRequirement:
    return _REQUIREMENTS[role]


def needs(role: Role) -> list[Any]:
    """For `dependencies=`: the route needs at least `role`."""
    return [Depends(require(role))]


async def public() -> None:
    """Declares a route open to everyone (health probes, metrics scrapes, the login flow, the UI shell)."""


PUBLIC: list[Any] = [Depends(public)]
