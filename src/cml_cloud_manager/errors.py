"""Typed errors. Each carries the HTTP status the API answers with; the edge turns them into JSON problems."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.headers: dict[str, str] = {}


def one_of(words: list[str]) -> str:
    """["a", "b", "c"] → "a, b or c", for messages people read."""
    return " or ".join([", ".join(words[:-1]), words[-1]]) if len(words) > 1 else "".join(words)


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class IllegalTransition(Conflict):
    """A state change the domain does not allow; nothing is stored."""

    code = "illegal_transition"


class BadRequest(AppError):
    status_code = 400
    code = "bad_request"


class Unavailable(AppError):
    status_code = 503
    code = "unavailable"


class UpstreamError(AppError):
    """An external system (AWS, a CML host) failed or refused."""

    status_code = 502
    code = "upstream_error"


class TooManyRequests(AppError):
    """Asked again too soon; `Retry-After` says when it will be accepted."""

    status_code = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, retry_after_seconds=retry_after)
        self.headers["Retry-After"] = str(retry_after)
