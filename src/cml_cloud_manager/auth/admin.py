"""`/api/tokens`: list and revoke API tokens (the same as `cml-cloud-manager token list|revoke`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from ..web.deps import DatabaseDep
from ..web.paging import Limit, Offset, Page, page_of
from . import tokens
from .guard import Authenticator, needs, require
from .roles import Principal, Role

router = APIRouter(prefix="/api/tokens", tags=["tokens"], dependencies=needs(Role.ADMIN))
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]


def _file_tokens(request: Request) -> dict[str, tuple[str, Role]]:
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator.file_tokens


@router.get("", summary="API tokens (hashes never leave the database) and their open browser sessions")
async def list_tokens(
    request: Request, db: DatabaseDep, limit: Limit = 100, offset: Offset = 0
) -> Page[tokens.TokenOut]:
    return page_of(await tokens.list_tokens(db, _file_tokens(request)), limit=limit, offset=offset)


@router.delete(
    "/{token}",
    summary="Revoke a token by name or id: bearer use and its browser sessions end at once on every replica",
)
async def revoke_token(token: str, request: Request, db: DatabaseDep, admin: Admin) -> tokens.TokenRevoked:
    revoked = await tokens.revoke(db, _file_tokens(request), token, by=admin.name)
    authenticator: Authenticator = request.app.state.authenticator
    authenticator.forget_all()  # the other replicas when their relay reads the event
    return revoked
