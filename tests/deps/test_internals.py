"""The library internals the code leans on, each checked so that a release that moves one fails here, by name,
rather than as a slow API or a hung shutdown. pyproject.toml bounds each library below its next release line."""

from __future__ import annotations

import asyncio
import inspect

import httpx
import pytest
import uvicorn
import uvloop
from fastapi import Request
from starlette.types import Receive, Scope, Send

from cml_cloud_manager.apps.api import Api
from cml_cloud_manager.apps.server import ApiServer
from cml_cloud_manager.web.server_send import SERVER_SEND, ServerSend, abort_connection

from ..conftest import serve_app
from ..e2e.processes import free_port


async def test_starlette_builds_the_stack_through_build_middleware_stack() -> None:
    """`Api` puts `ServerSend` outside every middleware by overriding a Starlette method; streams then find the
    server's own `send` in the scope."""
    app = Api()
    seen: list[bool] = []

    @app.get("/probe")
    async def probe(request: Request) -> dict[str, bool]:
        seen.append(callable(request.scope.get(SERVER_SEND)))
        return {"ok": True}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/probe")).status_code == 200
    assert isinstance(app.middleware_stack, ServerSend), "Starlette no longer calls build_middleware_stack"
    assert seen == [True], "the server's send no longer reaches the endpoint's scope"


def test_uvicorn_server_still_has_what_api_server_overrides() -> None:
    """`ApiServer` replaces uvicorn's signal capture (SSE streams must end before uvicorn waits for connections)
    and sets its exit flags; the worker's health server waits on `started`."""
    assert "capture_signals" in inspect.getsource(uvicorn.Server.serve), "uvicorn no longer captures signals there"
    assert ApiServer.capture_signals is not uvicorn.Server.capture_signals
    server = uvicorn.Server(uvicorn.Config(app=Api()))
    for flag in ("started", "should_exit", "force_exit"):
        assert getattr(server, flag) is False, f"uvicorn.Server.{flag} is gone or changed"


async def abort_mid_response(http: str) -> tuple[list[bool], bytes, BaseException | None]:
    """Serve one request with uvicorn's `http` protocol: the response starts, then the app aborts the connection
    through the server's `send`. Returns what abort_connection said, what the client read, and how reading ended."""
    aborted: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        aborted.append(abort_connection(scope[SERVER_SEND]))

    port = free_port()
    server, serving = await serve_app(ServerSend(app), port, http=http)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    received, ended = b"", None
    try:
        while chunk := await reader.read(65536):
            received += chunk
    except ConnectionResetError as exc:
        ended = exc
    writer.close()
    server.should_exit = True
    await serving
    return aborted, received, ended


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("http", ["httptools", "h11"])
async def test_uvicorns_send_leads_to_the_connections_transport(http: str, loop: str) -> None:
    """A dropped SSE client's connection is aborted through the transport that uvicorn's `send` is bound to
    (web/server_send.py, `abort_connection`): the attribute must still be there, in both HTTP protocols and on
    both event loops, and the abort must reach the client as a reset, not as a graceful close."""
    run = uvloop.run if loop == "uvloop" else asyncio.run
    aborted, received, ended = await asyncio.to_thread(run, abort_mid_response(http))
    assert aborted == [True], "uvicorn's send is no longer bound to an object with the connection's `transport`"
    assert b"partial" in received
    assert isinstance(ended, ConnectionResetError), "the connection was closed, not reset"
