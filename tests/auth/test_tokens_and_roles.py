"""Token mode, roles on every route, CSRF, headers and limits — against the real app over HTTP."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cml_cloud_manager.apps.api import create_app
from cml_cloud_manager.auth import tokens
from cml_cloud_manager.auth.roles import Role
from cml_cloud_manager.auth.table import PUBLIC, markdown, role_table
from cml_cloud_manager.config import ProcessRole, Settings
from cml_cloud_manager.storage.db import Database

from ..conftest import make_settings, serve_api

DOCS = Path(__file__).parents[2] / "docs" / "access.md"


@pytest.fixture
def token_settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        database_url,
        auth_mode="token",
        auth_admin_token_file=tmp_path / "admin-token",
        login_attempts_per_minute=3,
        max_request_bytes=2048,
    )


@pytest.fixture
async def token_api(token_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_api(token_settings) as client:
        yield client


@pytest.fixture
async def role_tokens(token_api: httpx.AsyncClient, token_settings: Settings) -> dict[Role, str]:
    db = Database(token_settings)
    try:
        found = {role: await tokens.create(db, name=f"test-{role}", role=role) for role in Role}
    finally:
        await db.dispose()
    return found


def test_every_route_declares_a_role_and_the_docs_table_is_current() -> None:
    app = create_app(ProcessRole.API, make_settings("sqlite+aiosqlite:///:memory:"))
    undeclared = [(method, path) for method, path, role in role_table(app) if role is None]
    assert undeclared == []
    assert DOCS.read_text() == markdown(app), "docs/access.md is stale: python -m cml_cloud_manager.apps.access_page"


async def test_first_start_generates_a_private_admin_token(
    token_api: httpx.AsyncClient, token_settings: Settings
) -> None:
    path = token_settings.auth_admin_token_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    assert (await token_api.get("/api/workers")).status_code == 401
    response = await token_api.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.json()["user"]["roles"] == ["admin"]
    assert (await token_api.get("/api/workers", headers={"Authorization": "Bearer nope"})).status_code == 401
    assert (await token_api.get("/api/events/stream")).status_code == 401


async def test_every_endpoint_for_every_role(token_api: httpx.AsyncClient, role_tokens: dict[Role, str]) -> None:
    app = create_app(ProcessRole.API, make_settings("sqlite+aiosqlite:///:memory:"))
    checked = 0
    for method, path, required in role_table(app):
        if required == PUBLIC or path == "/api/events/stream":
            continue
        assert required is not None, f"{method} {path} declares no role"
        url = path.replace("{", "").replace("}", "")  # ids that exist nowhere: allowed calls answer 404/4xx
        for role, token in role_tokens.items():
            response = await token_api.request(method, url, headers={"Authorization": f"Bearer {token}"}, json={})
            allowed = role.rank >= Role(required).rank
            if allowed:
                assert response.status_code not in (401, 403), (method, path, role, response.text)
            else:
                assert response.status_code == 403, (method, path, role, response.status_code)
                assert f"needs the {required} role" in response.json()["detail"]
            checked += 1
    assert checked > 80


async def test_browser_login_cookie_and_csrf(token_api: httpx.AsyncClient, role_tokens: dict[Role, str]) -> None:
    login = await token_api.post("/auth/login", json={"token": role_tokens[Role.OPERATOR]})
    assert login.status_code == 200
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    csrf = login.json()["csrf_token"]
    assert role_tokens[Role.OPERATOR] not in login.text
    assert (await token_api.get("/api/workers")).status_code == 200
    forged = await token_api.post("/api/workers/nope/stop")
    assert forged.status_code == 403 and "X-CSRF-Token" in forged.json()["detail"]
    assert (await token_api.post("/api/workers/nope/stop", headers={"X-CSRF-Token": csrf})).status_code == 404
    assert (await token_api.post("/auth/logout")).status_code == 204
    assert (await token_api.get("/api/workers")).status_code == 401


async def test_login_attempts_are_rate_limited(token_api: httpx.AsyncClient) -> None:
    statuses = [(await token_api.post("/auth/login", json={"token": f"wrong-{i}"})).status_code for i in range(5)]
    assert statuses == [401, 401, 401, 429, 429]


async def test_security_headers_and_body_limit(token_api: httpx.AsyncClient, role_tokens: dict[Role, str]) -> None:
    page = await token_api.get("/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "same-origin"
    big = await token_api.put(
        "/api/system/settings",
        content=b'{"values": {"x": "' + b"a" * 4096 + b'"}}',
        headers={"Authorization": f"Bearer {role_tokens[Role.ADMIN]}", "content-type": "application/json"},
    )
    assert big.status_code == 413 and "larger than 2048 bytes" in big.json()["detail"]


async def test_none_mode_refuses_a_public_address() -> None:
    from cml_cloud_manager.config import SettingsError, load_settings

    with pytest.raises(SettingsError, match="only allowed when APP_HOST is a loopback"):
        load_settings(auth_mode="none", app_host="0.0.0.0")
