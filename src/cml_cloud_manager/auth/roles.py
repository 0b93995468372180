"""Roles and the principal a request acts as."""

from __future__ import annotations

import enum
from dataclasses import dataclass

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
