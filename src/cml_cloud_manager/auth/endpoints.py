"""`/auth`: who am I, log in (token paste or OIDC code flow with PKCE), callback, log out."""

from __future__ import annotations

import hmac
import logging
import secrets
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy import delete

from ..errors import AppError, BadRequest
from ..storage.models import LoginStateRow
from . import sessions, tokens
from .guard import PUBLIC, Authenticator
from .json_body import JsonBodyRoute
from .oidc import pkce_pair
from .roles import NotAuthenticated, Principal, Role

log = logging.getLogger(__name__)
router = APIRouter(prefix="/auth", tags=["auth"], dependencies=PUBLIC, route_class=JsonBodyRoute)
LOGIN_STATE_TTL = timedelta(minutes=10)
# Binds an OIDC login to the browser that started it: without it, a link to /auth/callback carrying someone
# else's code and state would sign the browser that opens it in as that someone (login CSRF).
LOGIN_COOKIE = "cml_login"
LOGIN_COOKIE_PATH = "/auth/callback"


class TooManyAttempts(AppError):
    status_code = 429
    code = "too_many_login_attempts"


class TokenLogin(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: SecretStr


class User(BaseModel):
    name: str
    roles: list[Role] = Field(description="Lowest first")


class Me(BaseModel):
    user: User
    auth_mode: str = Field(description="token, oidc or none")
    csrf_token: str | None = Field(description="Send it as X-CSRF-Token with cookie-authenticated writes")


class LoggedOut(BaseModel):
    redirect: str = Field(description="Open it to end the provider session too")


def _auth(request: Request) -> Authenticator:
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator


def _me(principal: Principal, mode: str) -> Me:
    roles = sorted(principal.roles, key=lambda r: r.rank)
    return Me(user=User(name=principal.name, roles=roles), auth_mode=mode, csrf_token=principal.csrf_token)


def _secure(request: Request) -> bool:
    setting = request.app.state.settings.session_cookie_secure
    return request.url.scheme == "https" if setting == "auto" else setting == "true"


def _set_cookie(request: Request, response: Response, session_id: str, ttl: timedelta) -> None:
    response.set_cookie(
        sessions.COOKIE,
        session_id,
        max_age=int(ttl.total_seconds()),
        httponly=True,
        secure=_secure(request),
        samesite="lax",
        path="/",
    )


@router.get("/me", summary="The current user, their roles, and the CSRF token for cookie-authenticated writes")
async def me(request: Request) -> Me:
    authenticator = _auth(request)
    try:
        principal = await authenticator.principal(request)
    except NotAuthenticated as exc:
        raise NotAuthenticated(exc.message, login_url="/auth/login", auth_mode=authenticator.mode) from None
    return _me(principal, authenticator.mode)


@router.post("/login", summary="Token mode: exchange a pasted token for a session cookie", response_model=Me)
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
    ttl = timedelta(hours=authenticator.settings.session_ttl_hours)
    session_id, row = await sessions.create(
        authenticator.db,
        subject=found.name,
        roles=frozenset({found.role}),
        ttl=ttl,
        token_sha256=tokens.digest(body.token.get_secret_value().strip()),
    )
    log.info("%s logged in (%s) from %s", found.name, found.role, client)
    response = JSONResponse(_me(sessions.principal(row, token_id=found.id), authenticator.mode).model_dump(mode="json"))
    _set_cookie(request, response, session_id, ttl)
    return response


def _callback_url(request: Request) -> str:
    public = request.app.state.settings.public_url
    return f"{public.rstrip('/')}/auth/callback" if public else str(request.url_for("oidc_callback"))


@router.get(
    "/login",
    summary="OIDC mode: start the authorization-code flow (redirects to the provider)",
    status_code=302,
    response_class=RedirectResponse,
    responses={302: {"description": "To the provider's authorization endpoint, with a pre-login cookie"}},
)
async def login_redirect(request: Request, return_to: str = "/") -> RedirectResponse:
    authenticator = _auth(request)
    if authenticator.oidc is None:
        raise BadRequest(f"Browser sign-in through a provider is not used in {authenticator.mode} mode")
    if not return_to.startswith("/") or return_to.startswith("//"):
        return_to = "/"  # only local paths: no open redirect
    verifier, challenge = pkce_pair()
    state, nonce, browser = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(32)
    async with authenticator.db.session() as session:
        now = datetime.now(UTC)
        await session.execute(delete(LoginStateRow).where(LoginStateRow.created_at < now - LOGIN_STATE_TTL))
        session.add(
            LoginStateRow(
                state=state,
                browser_sha256=tokens.digest(browser),
                nonce=nonce,
                code_verifier=verifier,
                return_to=return_to,
                created_at=now,
            )
        )
    url = await authenticator.oidc.authorize_url(
        redirect_uri=_callback_url(request), state=state, nonce=nonce, challenge=challenge
    )
    response = RedirectResponse(url, status_code=302)
    # SameSite=Lax still sends it on the provider's top-level redirect back to the callback.
    response.set_cookie(
        LOGIN_COOKIE,
        browser,
        max_age=int(LOGIN_STATE_TTL.total_seconds()),
        httponly=True,
        secure=_secure(request),
        samesite="lax",
        path=LOGIN_COOKIE_PATH,
    )
    return response


@router.get(
    "/callback",
    name="oidc_callback",
    summary="OIDC mode: the provider sends the browser back here",
    status_code=302,
    response_class=RedirectResponse,
    responses={302: {"description": "Signed in (session cookie set): back to the page the login started from"}},
)
async def callback(request: Request, code: str = "", state: str = "", error: str = "") -> RedirectResponse:
    authenticator = _auth(request)
    if authenticator.oidc is None:
        raise BadRequest("No identity provider is configured")
    if error:
        raise NotAuthenticated(f"The identity provider refused the login: {error}")
    browser = request.cookies.get(LOGIN_COOKIE)
    if not browser:
        raise BadRequest("This browser did not start this sign-in (it has no login cookie): start again at /auth/login")
    async with authenticator.db.session() as session:
        pending = await session.get(LoginStateRow, state) if state else None
        if pending is not None and not hmac.compare_digest(pending.browser_sha256, tokens.digest(browser)):
            # Someone else's login: refused, and left for the browser that started it.
            raise BadRequest("This sign-in was started in another browser: start again at /auth/login")
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
    provider = sessions.ProviderTokens(
        refresh_token=answer.get("refresh_token"),
        id_token=answer["id_token"],
        access_expires_at=datetime.now(UTC) + timedelta(seconds=int(answer.get("expires_in", 300))),
    )
    session_id, _ = await sessions.create(
        authenticator.db,
        subject=identity.subject,
        roles=frozenset(roles),
        ttl=ttl,
        provider=provider,
        cipher=authenticator.cipher,
    )
    log.info("%s signed in through OIDC", identity.subject)
    response = RedirectResponse(pending.return_to, status_code=302)
    _set_cookie(request, response, session_id, ttl)
    response.delete_cookie(LOGIN_COOKIE, path=LOGIN_COOKIE_PATH, httponly=True, samesite="lax")
    return response


@router.post(
    "/logout",
    summary="End the session (and, with OIDC, say where to end the provider session)",
    status_code=204,
    responses={
        200: {"model": LoggedOut, "description": "Session ended; open `redirect` to end the provider session too"}
    },
)
async def logout(request: Request) -> Response:
    authenticator = _auth(request)
    session_id = request.cookies.get(sessions.COOKIE)
    row = await sessions.end(authenticator.db, session_id) if session_id else None
    if row is not None:
        authenticator.forget_all()  # the other replicas when their relay reads the event
    redirect = None
    if authenticator.oidc is not None and authenticator.cipher is not None and row is not None:
        home = authenticator.settings.public_url or str(request.base_url)
        id_token = authenticator.cipher.decrypt(row.id_token)
        redirect = await authenticator.oidc.logout_url(id_token=id_token, redirect_uri=home)
    response: Response = (
        JSONResponse(LoggedOut(redirect=redirect).model_dump()) if redirect else Response(status_code=204)
    )
    response.delete_cookie(sessions.COOKIE, path="/")
    return response


__all__ = ["Role", "router"]
