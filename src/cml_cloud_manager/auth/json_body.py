"""`JsonBodyRoute`: the route class of every router with JSON bodies. The caller is checked before the body.

FastAPI parses a declared body before it runs any dependency, the role requirement included: an anonymous
`POST /api/workers` with `{` would be told about its JSON (400) instead of being asked to log in (401), and
anyone could make the API parse what they send. This route runs the requirement first, then refuses a body that
is not JSON (a `text/plain` form post is what a cross-site page can send without a preflight)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from ..errors import AppError
from .guard import RoleRequirement


class UnsupportedMediaType(AppError):
    status_code = 415
    code = "unsupported_media_type"


def is_json(content_type: str) -> bool:
    """FastAPI's own rule for what it parses as JSON: application/json or application/<anything>+json."""
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return "transfer-encoding" in request.headers or (length is not None and length.strip() not in ("", "0"))


class JsonBodyRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        if self.body_field is None:  # FastAPI reads no body: the dependencies already come first
            return handle
        declared = [d.call for d in self.dependant.dependencies if isinstance(d.call, RoleRequirement)]
        requirement = max(declared, key=lambda r: r.role.rank, default=None)

        async def checked(request: Request) -> Response:
            if requirement is not None:
                await requirement(request)  # caches the caller: the dependency does not look it up again
            content_type = request.headers.get("content-type", "")
            if has_body(request) and not is_json(content_type):
                raise UnsupportedMediaType(
                    f"This endpoint takes a JSON body: send it with 'Content-Type: application/json' "
                    f"(got {content_type[:60] or 'no Content-Type'!r})"
                )
            return await handle(request)

        return checked
