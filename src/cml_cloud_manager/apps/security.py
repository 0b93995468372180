"""Security headers and request-size limits, as a plain ASGI middleware."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .problems import problem

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'"
)
# Swagger UI comes from a CDN and boots with an inline script; only its page gets that allowance.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; object-src 'none'"
)
HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
# Lab topologies may be larger than ordinary JSON bodies.
LARGE_BODY_PATHS = ("/labs/import",)
LARGE_BODY_BYTES = 5 * 1024 * 1024


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, *, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = LARGE_BODY_BYTES if path.endswith(LARGE_BODY_PATHS) else self.max_body
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response = problem(413, "payload_too_large", f"The request body is larger than {limit} bytes")
            await response(scope, receive, send)
            return
        csp = (DOCS_CSP if path.startswith("/api/docs") else CSP).encode()
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS, (b"content-security-policy", csp)]
            await send(message)

        try:
            await self.app(scope, limited_receive, with_headers)
        except BodyTooLarge:
            response = problem(413, "payload_too_large", f"The request body is larger than {limit} bytes")
            await response(scope, receive, send)


class BodyTooLarge(Exception):
    pass
