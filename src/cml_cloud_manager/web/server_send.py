"""Hands a streaming response the server's own `send`, under the other middlewares' wrappers, and a way to
abort the connection behind it."""

from __future__ import annotations

import contextlib
import socket
import struct

from starlette.types import ASGIApp, Receive, Scope, Send

SERVER_SEND = "cml.server_send"


class ServerSend:
    """The middlewares (ours and Starlette's) act on the response start only, yet every later body message
    still passes through each one's send wrapper. An SSE stream sends a message per event per client: with
    1,000 clients at 20 events/s those pass-through layers took ~19% of the API's CPU (py-spy). Streams send
    their start through the middlewares as usual and their body to the send stored here."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[SERVER_SEND] = send
        try:
            await self.app(scope, receive, send)
        finally:
            # The server's request object holds the scope, and `send` holds that object: left in place, the
            # reference would make every request a cycle for the garbage collector (~15 objects per request,
            # collected in 20-30 ms pauses under load).
            del scope[SERVER_SEND]


def abort_connection(send: Send) -> bool:
    """Drop the connection that `send` (the server's own) writes to, with whatever is still queued for it: in this
    process and in the kernel. False when `send` is not uvicorn's, and the connection is left to the server.

    An application cannot do this through ASGI: it can only end a response, or return or raise before the end,
    which uvicorn answers with `transport.close()`. That close is graceful: it waits for the write buffer to
    drain, which for a client that stopped reading is never. Its socket stayed ESTABLISHED with megabytes queued
    and SIGTERM waited for it until the graceful timeout. So the connection's transport is reached through the
    server's `send`, which uvicorn binds to its per-request cycle; the cycle keeps the transport as `transport`
    (in both its httptools and h11 protocols). That attribute is the one uvicorn internal relied on here;
    tests/deps/test_internals.py fails, by name, if a release moves it.

    `abort()` alone would close the descriptor but leave the kernel an orphaned socket (FIN_WAIT1) still holding
    everything queued, until the client reads or the kernel gives up minutes later. A zero linger time makes
    the close a reset, which frees the socket and its buffers at once. The client sees the connection reset,
    which a browser's EventSource answers by reconnecting with `Last-Event-ID`."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None or not callable(getattr(transport, "abort", None)):
        return False
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # not TCP (a Unix socket): the abort is enough
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    return True
