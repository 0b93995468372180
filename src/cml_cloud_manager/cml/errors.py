"""Typed failures of a CML host, as seen by `CMLClient`.

Every message names the host (its base URL) so a log line or a JSON problem is actionable on its own.
Credentials and license tokens never appear in messages or details.
"""

from __future__ import annotations

from typing import Any

from cml_cloud_manager.errors import NotFound, UpstreamError


class CMLError(UpstreamError):
    """A CML host failed, refused or could not be reached."""

    code = "cml_error"

    def __init__(self, message: str, *, host: str | None = None, status: int | None = None, **detail: Any) -> None:
        # `host` is the base URL; None only when there is no URL yet (e.g. a worker without an address).
        super().__init__(message, host=host, status=status, **detail)
        self.host = host
        self.status = status


class CMLUnreachable(CMLError):
    """No usable answer: connection refused, timeout, or a gateway (502/503/504) in front of CML."""

    code = "cml_unreachable"


class CMLAuthFailed(CMLError):
    """CML rejected the credentials, or still refused a freshly issued token."""

    code = "cml_auth_failed"


class CMLNotFound(CMLError, NotFound):
    """CML answered 404 (an unknown lab, usually)."""

    # Both bases define these; the not-found meaning wins over the generic upstream one.
    status_code = 404
    code = "cml_not_found"


class CMLApiError(CMLError):
    """Any other 4xx/5xx, or a body we cannot interpret; the message carries CML's own description."""

    code = "cml_api_error"
