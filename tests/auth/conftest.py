from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cml_cloud_manager.config import Settings

from ..conftest import make_settings, serve_api, serve_app
from ..e2e.processes import free_port
from .oidc_provider import CLIENT_ID, Provider


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    port = free_port()
    provider = Provider(base_url=f"http://127.0.0.1:{port}")
    server, task = await serve_app(provider.app(), port)
    yield provider
    server.should_exit = True
    await task


def oidc_settings(database_url: str, provider: Provider, tmp_path: Path, **overrides: object) -> Settings:
    """OIDC mode against the test provider; a generated session key goes to the test's directory."""
    base: dict[str, object] = {
        "auth_mode": "oidc",
        "oidc_issuer": provider.issuer,
        "oidc_client_id": CLIENT_ID,
        "session_encryption_keys_file": tmp_path / "session-keys",
    }
    return make_settings(database_url, **(base | overrides))


@pytest.fixture
async def oidc_api(provider: Provider, database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_api(oidc_settings(database_url, provider, tmp_path)) as client:
        yield client


async def sign_in(api: httpx.AsyncClient) -> httpx.Response:
    """The browser's code flow: /auth/login, the provider (which approves at once), back to /auth/callback."""
    start = await api.get("/auth/login")
    assert start.status_code == 302, start.text
    async with httpx.AsyncClient() as browser:
        back = await browser.get(start.headers["location"])
    assert back.status_code == 302, back.text
    return await api.get(back.headers["location"])
