"""Resolving the caller of a request, and the `require(role)` dependency every endpoint declares."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import Depends, Request

from ..config import Settings
from ..storage.db import Database
from . import sessions, tokens
from .cache import CredentialCache
from .keys import SessionCipher, load_cipher
from .oidc import OIDCProvider
from .ratelimit import LoginLimiter
from .roles import Forbidden, NotAuthenticated, Principal, Role

ANONYMOUS = Principal("anonymous", frozenset({Role.ADMIN}), "none")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class Authenticator:
    """One per API process: knows the mode and how to turn a request into a Principal."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.mode = settings.auth_mode
        self.file_tokens = tokens.load_file(Path(settings.auth_tokens_file)) if settings.auth_tokens_file else {}
        self.oidc = OIDCProvider(settings) if self.mode == "oidc" else None
        self.limiter = LoginLimiter(settings.login_attempts_per_minute)
        self.cipher: SessionCipher | None = None  # OIDC mode: encrypts the provider tokens sessions keep
        # Both kept current by the outbox: the API registers them with its relay (see `cache`).
        self.known_tokens: CredentialCache[tokens.KnownToken] = CredentialCache(settings.auth_cache_seconds)
        self.known_sessions: CredentialCache[sessions.Live] = CredentialCache(settings.auth_cache_seconds)

    def forget_all(self) -> None:
        """After a revocation or a logout made by this process: refused here at once, without waiting for the
        relay to read the event."""
        self.known_tokens.clear()
        self.known_sessions.clear()

    async def start(self) -> None:
        if self.mode == "token":
            await tokens.bootstrap(self.db, self.settings, self.file_tokens)
        if self.mode == "oidc":
            self.cipher = load_cipher(self.settings)

    async def aclose(self) -> None:
        if self.oidc is not None:
            await self.oidc.aclose()

    async def principal(self, request: Request) -> Principal:
        cached: Principal | None = getattr(request.state, "principal", None)
        if cached is not None:
            return cached
        found = await self.authenticate(request)
        request.state.principal = found
        return found

    async def authenticate(self, request: Request) -> Principal:
        """The caller as of now, not the one remembered for this request: also what a stream checks again."""
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
            live = await self._session(tokens.digest(session_id))
            # In token mode a session counts only while the token it was opened with exists (see `sessions`).
            if live is not None and (self.mode != "token" or live.row.token_sha256):
                live = await self._refreshed(live)
                return sessions.principal(live.row, token_id=live.token_id)
        raise NotAuthenticated("Log in first: send a bearer token or sign in at /auth/login")

    async def _session(self, id_sha256: str) -> sessions.Live | None:
        live = self.known_sessions.get(id_sha256)
        now = datetime.now(UTC)
        # A session due for a provider refresh is read again: another replica may have refreshed it already.
        due = (
            live is not None
            and live.row.access_expires_at is not None
            and live.row.access_expires_at - now <= sessions.REFRESH_MARGIN
        )
        if live is None or due:
            live = await sessions.load_hashed(self.db, id_sha256, self.file_tokens)
            if live is None:
                self.known_sessions.forget(id_sha256)
                return None
            self.known_sessions.put(id_sha256, live)
        if live.row.expires_at <= now:
            self.known_sessions.forget(id_sha256)
            return None
        return live

    async def _bearer(self, credential: str) -> Principal:
        if self.oidc is not None:
            identity = await self.oidc.verify(credential)
            expires = identity.claims.get("exp")
            expires_at = datetime.fromtimestamp(expires, UTC) if isinstance(expires, int | float) else None
            return Principal(identity.subject, identity.roles, "bearer", expires_at=expires_at, recheck_at=expires_at)
        hashed = tokens.digest(credential)
        in_file = self.file_tokens.get(hashed)
        found = tokens.KnownToken(*in_file, id=None) if in_file else self.known_tokens.get(hashed)
        if found is None:
            found = await tokens.lookup_hashed(self.db, hashed)
            if found is not None:
                self.known_tokens.put(hashed, found)
        if found is None:
            raise NotAuthenticated("Unknown bearer token")
        return Principal(found.name, frozenset({found.role}), "bearer", token_id=found.id)

    async def _refreshed(self, live: sessions.Live) -> sessions.Live:
        """Keep the provider session alive: refresh shortly before the access token expires, taking the roles
        the provider grants now. A refresh the provider refuses (user disabled, signed out or revoked there)
        ends the session at once; a provider that cannot answer leaves it alone (503)."""
        row = live.row
        if self.oidc is None or self.cipher is None or not row.refresh_token or row.access_expires_at is None:
            return live
        if row.access_expires_at - datetime.now(UTC) > sessions.REFRESH_MARGIN:
            return live
        try:
            refresh_token = self.cipher.decrypt(row.refresh_token)
            if refresh_token is None:
                raise NotAuthenticated("This session can no longer be refreshed; sign in again")
            answer = await self.oidc.refresh(refresh_token)
            identity = await self.oidc.verify(answer["access_token"])
        except NotAuthenticated:
            fresher = await sessions.end_unless_refreshed(self.db, row, self.file_tokens)
            if fresher is None:
                raise
            return fresher
        provider = sessions.ProviderTokens(
            refresh_token=answer.get("refresh_token"),
            id_token=answer.get("id_token"),
            access_expires_at=datetime.now(UTC) + timedelta(seconds=int(answer.get("expires_in", 300))),
        )
        await sessions.refreshed(self.db, row, roles=identity.roles, provider=provider, cipher=self.cipher)
        return live


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
