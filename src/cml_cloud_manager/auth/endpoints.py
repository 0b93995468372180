"""`/auth`: who am I, log in (token paste or OIDC code flow with PKCE), callback, log out."""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, SecretStr
from sqlalchemy import delete

from ..errors import AppError, BadRequest
from ..storage.models import LoginStateRow
from . import sessions, tokens
from .guard import PUBLIC, Authenticator
from .oidc import pkce_pair
from .roles import NotAuthenticated, Principal, Role

log = logging.getLogger(__name__)
router = APIRouter(prefix="/auth", tags=["auth"], dependencies=PUBLIC)
LOGIN_STATE_TTL = timedelta(minutes=10)


class TooManyAttempts(AppError):
    status_code = 429
    code = "too_many_login_attempts"


class TokenLogin(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: SecretStr


def _auth(request: Request) -> Authenticator:
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator


def _me(principal: Principal, mode: str) -> dict[str, Any]:
    return {
        "user": {"name": principal.name, "roles": sorted(principal.roles, key=lambda r: r.rank)},
        "auth_mode": mode,
        "csrf_token": principal.csrf_token,
    }


def _set_cookie(request: Request, response: Response, session_id: str, ttl: timedelta) -> None:
    setting = request.app.state.settings.session_cookie_secure
    secure = request.url.scheme == "https" if setting == "auto" else setting == "true"
    response.set_cookie(
        sessions.COOKIE,
        session_id,
        max_age=int(ttl.total_seconds()),
        httponly=True,
        secure=secure,
        samesite="lax",
        path="/",
    )


@router.get("/me", summary="The current user, their roles, and the CSRF token for cookie-authenticated writes")
async def me(request: Request) -> dict[str, Any]:
    authenticator = _auth(request)
    try:
        principal = await authenticator.principal(request)
    except NotAuthenticated as exc:
        raise NotAuthenticated(exc.message, login_url="/auth/login", auth_mode=authenticator.mode) from None
    return _me(principal, authenticator.mode)


@router.post("/login", summary="Token mode: exchange a pasted token for a session cookie")
async def login_with_token(body: TokenLogin, request: Request) -> JSONResponse:
    authenticator = _auth(request)
    if authenticator.mode != "token":
        raise BadRequest(f"Token login is not used in {authenticator.mode} mode; open /auth/login instead")
    client = request.client.host if request.client else "unknown"
    if not authenticator.limiter.allow(client):
        raise TooManyAttempts("Too many login attempts; wait a minute and try again")
    found = await tokens.lookup(authenticator.db, authenticator.file_tokens, body.token.get_secret_value().strip())
    if found is None:
        log.warning("failed token login from %s", client)
        raise NotAuthenticated("That token is not valid")
    name, role = found
    ttl = timedelta(hours=authenticator.settings.session_ttl_hours)
    session_id, row = await sessions.create(authenticator.db, subject=name, roles=frozenset({role}), ttl=ttl)
    log.info("%s logged in (%s) from %s", name, role, client)
    response = JSONResponse(_me(sessions.principal(row), authenticator.mode))
    _set_cookie(request, response, session_id, ttl)
    return response


def _callback_url(request: Request) -> str:
    public = request.app.state.settings.public_url
    return f"{public.rstrip('/')}/auth/callback" if public else str(request.url_for("oidc_callback"))


@router.get("/login", summary="OIDC mode: start the authorization-code flow (redirects to the provider)")
async def login_redirect(request: Request, return_to: str = "/") -> RedirectResponse:
    authenticator = _auth(request)
    if authenticator.oidc is None:
        raise BadRequest(f"Browser sign-in through a provider is not used in {authenticator.mode} mode")
    if not return_to.startswith("/") or return_to.startswith("//"):
        return_to = "/"  # only local paths: no open redirect
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    async with authenticator.db.session() as session:
        now = datetime.now(UTC)
        await session.execute(delete(LoginStateRow).where(LoginStateRow.created_at < now - LOGIN_STATE_TTL))
        session.add(
            LoginStateRow(state=state, nonce=nonce, code_verifier=verifier, return_to=return_to, created_at=now)
        )
    url = await authenticator.oidc.authorize_url(
        redirect_uri=_callback_url(request), state=state, nonce=nonce, challenge=challenge
    )
    return RedirectResponse(url, status_code=302)


@router.get("/callback", name="oidc_callback", summary="OIDC mode: the provider sends the browser back here")
async def callback(request: Request, code: str = "", state: str = "", error: str = "") -> RedirectResponse:
    authenticator = _auth(request)
    if authenticator.oidc is None:
        raise BadRequest("No identity provider is configured")
    if error:
        raise NotAuthenticated(f"The identity provider refused the login: {error}")
    async with authenticator.db.session() as session:
        pending = await session.get(LoginStateRow, state) if state else None
        if pending is not None:
            await session.delete(pending)
    if pending is None or pending.created_at < datetime.now(UTC) - LOGIN_STATE_TTL or not code:
        raise NotAuthenticated("This login link is unknown or expired; start again at /auth/login")
    answer = await authenticator.oidc.exchange(
        code=code, redirect_uri=_callback_url(request), verifier=pending.code_verifier
    )
    identity = await authenticator.oidc.verify(
        answer["id_token"], nonce=pending.nonce, audience=authenticator.settings.oidc_client_id
    )
    roles = identity.roles
    if "access_token" in answer:
        roles = roles | (await authenticator.oidc.verify(answer["access_token"])).roles
    if not roles:
        raise NotAuthenticated(f"{identity.subject} has none of the roles admin, operator or viewer")
    ttl = timedelta(hours=authenticator.settings.session_ttl_hours)
    expires = datetime.now(UTC) + timedelta(seconds=int(answer.get("expires_in", 300)))
    session_id, _ = await sessions.create(
        authenticator.db,
        subject=identity.subject,
        roles=frozenset(roles),
        ttl=ttl,
        oidc={
            "refresh_token": answer.get("refresh_token"),
            "id_token": answer["id_token"],
            "access_expires_at": expires,
        },
    )
    log.info("%s signed in through OIDC", identity.subject)
    response = RedirectResponse(pending.return_to, status_code=302)
    _set_cookie(request, response, session_id, ttl)
    return response


@router.post(
    "/logout",
    summary="End the session (and, with OIDC, say where to end the provider session)",
    status_code=204,
    responses={200: {"description": "Session ended; open `redirect` to end the provider session too"}},
)
async def logout(request: Request) -> Response:
    authenticator = _auth(request)
    session_id = request.cookies.get(sessions.COOKIE)
    row = await sessions.end(authenticator.db, session_id) if session_id else None
    redirect = None
    if authenticator.oidc is not None and row is not None:
        home = authenticator.settings.public_url or str(request.base_url)
        redirect = await authenticator.oidc.logout_url(id_token=row.id_token, redirect_uri=home)
    response: Response = JSONResponse({"redirect": redirect}) if redirect else Response(status_code=204)
    response.delete_cookie(sessions.COOKIE, path="/")
    return response


__all__ = ["Role", "router"]
