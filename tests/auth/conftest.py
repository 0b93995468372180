from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ..conftest import serve_app
from ..e2e.processes import free_port
from .oidc_provider import Provider


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    port = free_port()
    provider = Provider(base_url=f"http://127.0.0.1:{port}")
    server, task = await serve_app(provider.app(), port)
    yield provider
    server.should_exit = True
    await task
