"""Roles and the principal a request acts as."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from ..errors import AppError


class Role(enum.StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}


class NotAuthenticated(AppError):
    status_code = 401
    code = "not_authenticated"


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[Role]
    via: str  # "bearer", "session" or "none"
    csrf_token: str | None = None
    # For what outlives a request (an SSE stream): what can end this caller's access before its next request.
    # The database id of the API token used, directly or through the session, and the session's reference
    # (`sessions.ref`): events end those (`credentials`). When the credential expires (a session's TTL, an OIDC
    # bearer's `exp`), and when it must be checked again before that (an OIDC session's refresh).
    token_id: str | None = None
    session: str | None = None
    expires_at: datetime | None = None
    recheck_at: datetime | None = None

    @property
    def highest(self) -> Role | None:
        return max(self.roles, key=lambda r: r.rank, default=None)

    def allows(self, required: Role) -> bool:
        top = self.highest
        return top is not None and top.rank >= required.rank


def parse_roles(names: object) -> frozenset[Role]:
    if not isinstance(names, list | tuple | set | frozenset):
        return frozenset()
    return frozenset(Role(n) for n in names if n in Role._value2member_map_)
