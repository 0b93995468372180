"""What every simulated CML endpoint shares: the per-request `Call`, host lookup, auth, outages, error bodies."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from cml_cloud_manager.cml.simulator import payloads
from cml_cloud_manager.cml.simulator.state import SimError, SimHost, SimUser

HOST_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass
class Call:
    """One authenticated request to a simulated host, as handlers see it."""

    request: Request
    host: SimHost
    user: SimUser
    body: bytes
    now: datetime

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            raise SimError(422, "The request body is not valid JSON.") from None

    def flag(self, name: str) -> bool:
        return self.request.query_params.get(name, "false").lower() in ("1", "true", "yes")

    @property
    def lab_id(self) -> str:
        return str(self.request.path_params["lab_id"])

    def path(self, name: str) -> str:
        return str(self.request.path_params[name])

    def require_admin(self) -> None:
        if not self.user.admin:
            raise SimError(403, "Access denied: administrator rights required.")


def json_response(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def error_response(status: int, description: str) -> JSONResponse:
    return json_response(payloads.error_body(status, description), status)


def no_content() -> Response:
    return Response(status_code=204)


def host_endpoint(
    host_for: Callable[[str], SimHost],
    clock: Callable[[], datetime],
    handler: Callable[..., Response],
    *,
    authenticated: bool = True,
) -> Callable[[Request], Any]:
    """Wrap a handler with what every simulated host does first: delays, outages, bearer auth, errors.

    Authenticated handlers receive a `Call`; the others `(host, body)`.
    """

    async def endpoint(request: Request) -> Response:
        key = str(request.path_params["host"])
        if not HOST_KEY.fullmatch(key):
            return error_response(404, f"No such host: {key}")
        host = host_for(key)
        host.request_count += 1
        host.inflight += 1
        host.max_inflight = max(host.max_inflight, host.inflight)
        try:
            # Read before any delay: a client that gives up meanwhile must not turn into a server error.
            body = await request.body()
            if host.config.slow_seconds:
                await asyncio.sleep(host.config.slow_seconds)
            if host.config.unreachable:
                # What the reverse proxy in front of a stopped controller answers.
                return PlainTextResponse(f"503 Service Unavailable: upstream {key} is unreachable", 503)
            now = clock()
            if not authenticated:
                return handler(host, body)
            header = request.headers.get("authorization", "")
            if not header.lower().startswith("bearer "):
                return error_response(401, "No authorization token provided.")
            user = host.user_for_token(header[7:].strip())
            if user is None:
                return error_response(401, "Authorization token is invalid or has expired.")
            return handler(Call(request, host, user, body, now))
        except SimError as exc:
            return error_response(exc.status, exc.description)
        except ClientDisconnect:
            return Response(status_code=499)  # nobody is listening; nginx's code for it
        finally:
            host.inflight -= 1

    return endpoint
