"""Security headers, request-size limits and, in `AUTH_MODE=none`, loopback-only hosts and same-origin writes,
as a plain ASGI middleware."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..web.problems import problem

# One policy for every page, the API docs included: nothing from elsewhere, no inline script or style.
CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    b"frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'"
)
HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"content-security-policy", CSP),
]
# Answers about live state (and the CSRF token) must not be kept by browsers or shared caches.
JSON_TYPES = (b"application/json", b"application/problem+json")
NO_STORE = (b"cache-control", b"no-store")
# Lab topologies may be larger than ordinary JSON bodies.
LARGE_BODY_PATHS = ("/labs/import",)
LARGE_BODY_BYTES = 5 * 1024 * 1024
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# What a browser says about a request its user made on this origin, or typed in (`none`).
SAME_ORIGIN_FETCH = frozenset({b"same-origin", b"none"})


class BodyTooLarge(HTTPException):
    """Raised from `receive`, wherever the body is read: FastAPI re-raises HTTP exceptions from body parsing
    (anything else becomes a 400), and the app's handler turns it into a 413 problem."""

    code = "payload_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than {limit} bytes")


def is_loopback_host(host: str) -> bool:
    """`Host` names this machine's loopback (`localhost`, 127.0.0.0/8, ::1), with or without a port."""
    try:
        name = urlsplit(f"//{host}").hostname or ""
    except ValueError:  # e.g. an unbalanced "[" in an IPv6 literal
        return False
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def with_security_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    content_type = b""
    for name, value in headers:
        if name == b"cache-control":  # the response chose (e.g. the event stream's no-cache)
            return [*headers, *HEADERS]
        if name == b"content-type":
            content_type = value
    if content_type.startswith(JSON_TYPES):
        return [*headers, *HEADERS, NO_STORE]
    return [*headers, *HEADERS]


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, *, max_body: int, loopback_only: bool) -> None:
        self.app = app
        self.max_body = max_body
        # AUTH_MODE=none makes every caller an admin; the settings keep it on a loopback address, but a web page
        # the local user opens can still reach that address: through DNS rebinding (its own name resolving to
        # 127.0.0.1, so `Host` is that name) or by posting cross-site. Those are refused.
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = with_security_headers(list(message.get("headers", [])))
            await send(message)

        headers = dict(scope["headers"])
        path: str = scope["path"]
        limit = LARGE_BODY_BYTES if path.endswith(LARGE_BODY_PATHS) else self.max_body
        refusal = self.loopback_refusal(scope, headers) if self.loopback_only else None
        declared = headers.get(b"content-length")
        if refusal is None and declared is not None and declared.isdigit() and int(declared) > limit:
            refusal = problem(413, "payload_too_large", f"The request body is larger than {limit} bytes")
        if refusal is not None:
            await refusal(scope, receive, with_headers)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # a chunked body has no Content-Length to refuse up front
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, with_headers)

    @staticmethod
    def loopback_refusal(scope: Scope, headers: dict[bytes, bytes]) -> JSONResponse | None:
        host = headers.get(b"host", b"").decode("latin-1")
        if not is_loopback_host(host):
            return problem(
                403,
                "forbidden_host",
                f"AUTH_MODE=none answers only requests for a loopback host (localhost, 127.0.0.1, [::1]); this one "
                f"named {host!r}. Open the API by its loopback address, or use AUTH_MODE=token or oidc.",
            )
        if scope["method"] in SAFE_METHODS:
            return None
        site = headers.get(b"sec-fetch-site")
        origin = headers.get(b"origin")
        own_origin = f"{scope['scheme']}://{host}".lower().encode("latin-1")
        cross_site = site is not None and site not in SAME_ORIGIN_FETCH
        if cross_site or (origin is not None and origin.lower() != own_origin):
            shown = (origin or site or b"").decode("latin-1")
            return problem(
                403,
                "cross_origin",
                f"AUTH_MODE=none refuses cross-origin writes (this one came from {shown!r}); send it from "
                f"{own_origin.decode('latin-1')} itself or from a client that is not a web page.",
            )
        return None
