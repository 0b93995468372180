"""Errors become JSON problems (RFC 9457) a person can act on; no stack trace ever reaches a client."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.routing import Match

from ..errors import AppError
from ..storage.retry import contention

log = logging.getLogger(__name__)


def problem(
    status: int, code: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"type": f"urn:cml-cloud-manager:{code}", "title": code.replace("_", " "), "status": status}
    body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[0] if loc else "request")


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return problem(exc.status_code, exc.code, exc.message, headers=exc.headers or None, **exc.detail)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        ctx = next(e.get("ctx", {}) for e in errors if e.get("type") == "json_invalid")
        return problem(400, "invalid_json", f"The request body is not valid JSON: {ctx.get('error', 'parse error')}")
    messages = [f"{_location(tuple(e['loc']))}: {e['msg']}" for e in errors]
    return problem(
        422,
        "invalid_request",
        "; ".join(messages),
        errors=[{"field": _location(tuple(e["loc"])), "message": e["msg"]} for e in errors],
    )


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else "request refused"
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"No such endpoint: {request.method} {request.url.path}"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        allowed = _allowed_methods(request)
        headers["Allow"] = allowed
        detail = f"{request.method} is not allowed on {request.url.path}; allowed: {allowed}"
    return problem(exc.status_code, getattr(exc, "code", "http_error"), detail, headers=headers)


def _allowed_methods(request: Request) -> str:
    """Every method some route serves on this path. Starlette's own `Allow` names only the methods of the first
    route whose path matched, e.g. GET where PUT is served too by another route."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]
    return ", ".join(allowed)


async def _database(request: Request, exc: Exception) -> JSONResponse:
    if (reason := contention(exc)) is not None:
        # The database is up and answered: this write lost to concurrent ones even after its retries.
        log.warning("write conflict (%s) during %s %s: %s", reason, request.method, request.url.path, exc)
        return problem(
            409, "write_conflict", "The change collided with concurrent changes and was not saved; retry it."
        )
    log.error("database unavailable during %s %s: %s", request.method, request.url.path, exc)
    return problem(503, "database_unavailable", "The database is unavailable; retry in a few seconds.")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error during %s %s", request.method, request.url.path)
    return problem(500, "internal_error", "An internal error occurred; the API log has the details.")


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}


# Every route may answer with these; declaring them keeps the OpenAPI document honest for clients and fuzzers.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": text, "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}}}
    for status, text in {
        400: "Bad request",
        401: "Not authenticated",
        403: "Role does not allow this",
        404: "Not found",
        409: "Conflicts with the current state",
        413: "Request body too large",
        415: "Request body is not application/json",
        422: "Invalid request",
        429: "Too many requests",
        502: "AWS or a CML host failed",
        503: "Database unavailable",
    }.items()
}


def document(app: FastAPI) -> None:
    """Our 422s are problems too: say so in the OpenAPI document instead of FastAPI's default shape."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schemas = schema.get("components", {}).get("schemas", {})
            if "HTTPValidationError" in schemas:
                schemas["HTTPValidationError"] = PROBLEM_SCHEMA
                schemas.pop("ValidationError", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    document(app)
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    # Connection errors reach us raw when the database refuses connections (e.g. while it restarts).
    for db_error in (OperationalError, DBAPIError, PoolTimeout, OSError, TimeoutError):
        app.add_exception_handler(db_error, _database)
    app.add_exception_handler(Exception, _unexpected)
