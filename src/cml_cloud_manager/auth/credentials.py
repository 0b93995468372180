"""Access for what outlives a request: an SSE stream keeps the keys of the credential it was opened with (its API
token, its browser session) and ends when an outbox event ends one of them, on every API replica, as that replica's
relay reads the event; and it ends when the credential expires or is refused when checked again (an OIDC session
whose refresh the provider refuses). A request needs none of this: its credential is checked each time."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from ..events.grants import Grant
from ..storage.models import EventRow
from . import sessions, tokens
from .guard import Authenticator
from .roles import Forbidden, Principal, Role

# The outbox events that end a credential before it expires.
ENDING = frozenset({tokens.REVOKED, sessions.ENDED})


def token_key(token_id: str) -> str:
    return f"token:{token_id}"


def session_key(session: str) -> str:
    return f"session:{session}"


def keys(principal: Principal) -> frozenset[str]:
    """The keys of what `principal` authenticated with; empty when no event can end it (`none` mode, an OIDC
    bearer, a token from AUTH_TOKENS_FILE, which ends with its line and a restart)."""
    found = set()
    if principal.token_id is not None:
        found.add(token_key(principal.token_id))
    if principal.session is not None:
        found.add(session_key(principal.session))
    return frozenset(found)


def ended(row: EventRow) -> tuple[str, str]:
    """The key an `ENDING` event ends, and why, in words."""
    if row.type == tokens.REVOKED:
        return token_key(tokens.TokenRevoked.model_validate(row.data).id), "its API token was revoked"
    if row.type == sessions.ENDED:
        data = sessions.SessionEnded.model_validate(row.data)
        return session_key(data.session), f"its session ended ({data.reason})"
    raise ValueError(f"{row.type} ends no credential")


class StreamAccess:
    """`hub.access`: what a stream's caller is granted, as of now."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    async def check(self, request: Request) -> Grant:
        principal = await self.authenticator.authenticate(request)
        if not principal.allows(Role.VIEWER):
            raise Forbidden(f"The event stream needs the viewer role; {principal.name} has none now")
        return Grant(
            principal.name,
            credentials=keys(principal),
            expires_at=principal.expires_at,
            recheck_at=principal.recheck_at,
        )


class StreamEnding:
    """A relay consumer (`events.relay.Consumer`): ends the streams of each credential an event ends."""

    def __init__(self, end_streams: Callable[[str, str], None]) -> None:
        self.end_streams = end_streams

    async def load(self, session: AsyncSession) -> None:
        """Nothing to load: a stream opened after an event checked its credential itself."""

    async def apply(self, session: AsyncSession, events: Sequence[EventRow]) -> None:
        for event in events:
            if event.type in ENDING:
                self.end_streams(*ended(event))
