"""Errors become JSON problems (RFC 9457) a person can act on; no stack trace ever reaches a client."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from ..errors import AppError

log = logging.getLogger(__name__)


def problem(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": f"urn:cml-cloud-manager:{code}", "title": code.replace("_", " "), "status": status}
    body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[0] if loc else "request")


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return problem(exc.status_code, exc.code, exc.message, **({"context": exc.detail} if exc.detail else {}))


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
    return problem(exc.status_code, "http_error", detail)


async def _database(request: Request, exc: Exception) -> JSONResponse:
    log.error("database unavailable during %s %s: %s", request.method, request.url.path, exc)
    return problem(503, "database_unavailable", "The database is unavailable; retry in a few seconds.")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, OSError | TimeoutError):
        return await _database(request, exc)
    log.exception("unhandled error during %s %s", request.method, request.url.path)
    return problem(500, "internal_error", "An internal error occurred; the API log has the details.")


def install(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    for db_error in (OperationalError, DBAPIError, PoolTimeout):
        app.add_exception_handler(db_error, _database)
    app.add_exception_handler(Exception, _unexpected)
