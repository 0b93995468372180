"""Prometheus request metrics as a plain ASGI middleware (no BaseHTTPMiddleware: it would buffer SSE); it also
answers every request that committed events with their sequence number (`web/sequence.py`), from the same
wrapper of the response start."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..web import sequence

HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests", ["method", "path", "status"])
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP request duration (streams excluded)",
    ["method", "path"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
STREAMS = {"/api/events/stream"}


class HttpMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500
        written = sequence.track()

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                written.answered = True
                if written.sequence:
                    headers = [*message.get("headers", []), (sequence.HEADER, b"%d" % written.sequence)]
                    message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            HTTP_REQUESTS.labels(scope["method"], path, str(status)).inc()
            if path not in STREAMS:
                HTTP_DURATION.labels(scope["method"], path).observe(time.perf_counter() - began)
