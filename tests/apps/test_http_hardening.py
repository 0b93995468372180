"""What the HTTP edge refuses and how it answers: the loopback-only `none` mode (DNS rebinding, cross-site
writes), JSON bodies only as JSON, authentication before the body is parsed, 413 for chunked bodies, `Allow` on
405, `no-store` on JSON, and a docs page that loads nothing from elsewhere — against the real app over HTTP."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cml_cloud_manager.apps.api import create_app
from cml_cloud_manager.auth import tokens
from cml_cloud_manager.auth.json_body import JsonBodyRoute
from cml_cloud_manager.auth.roles import Role
from cml_cloud_manager.auth.table import api_routes
from cml_cloud_manager.config import ProcessRole, Settings
from cml_cloud_manager.storage.db import Database

from ..conftest import make_settings, serve_api

WRITE = ("PUT", "/api/system/settings")
EMPTY_UPDATE = b'{"values": {}}'


@pytest.fixture
def token_settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        database_url, auth_mode="token", auth_admin_token_file=tmp_path / "admin-token", max_request_bytes=2048
    )


@pytest.fixture
async def token_api(token_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_api(token_settings) as client:
        yield client


@pytest.fixture
async def bearer(token_api: httpx.AsyncClient, token_settings: Settings) -> dict[Role, dict[str, str]]:
    db = Database(token_settings)
    try:
        made = {role: await tokens.create(db, name=f"edge-{role}", role=role) for role in Role}
    finally:
        await db.dispose()
    return {role: {"Authorization": f"Bearer {token}"} for role, token in made.items()}


def port_of(client: httpx.AsyncClient) -> int:
    port = client.base_url.port
    assert port is not None
    return port


# --- AUTH_MODE=none: loopback hosts and same-origin writes only ------------------------------------------------


async def test_none_mode_refuses_a_rebound_host_name(api: httpx.AsyncClient) -> None:
    port = port_of(api)
    for host in (f"rebind.evil.example:{port}", "rebind.evil.example", f"10.0.0.5:{port}", f"127.0.0.1.nip.io:{port}"):
        for method, path in (("GET", "/api/workers"), ("GET", "/"), ("POST", "/api/system/jobs/housekeeping/run")):
            response = await api.request(method, path, headers={"Host": host})
            assert response.status_code == 403, (host, method, path, response.status_code)
            assert "loopback" in response.json()["detail"] and host in response.json()["detail"]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}", f"127.1.2.3:{port}"):
        assert (await api.get("/api/workers", headers={"Host": host})).status_code == 200, host


async def test_none_mode_refuses_cross_site_writes(api: httpx.AsyncClient) -> None:
    port = port_of(api)
    own = f"http://127.0.0.1:{port}"
    refused = [
        # the reproduction: a page elsewhere posting a "simple" cross-site request
        {"Origin": "https://evil.example", "Content-Type": "text/plain"},
        {"Origin": "null"},
        {"Origin": f"http://localhost:{port + 1}"},  # another local server: same site, other origin
        {"Origin": f"http://localhost:{port}"},  # a different origin than the Host the request names
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": own, "Sec-Fetch-Site": "cross-site"},
    ]
    for headers in refused:
        response = await api.post("/api/system/jobs/housekeeping/run", headers=headers)
        assert response.status_code == 403, (headers, response.status_code)
        assert "cross-origin" in response.json()["detail"]
    for headers in ({}, {"Origin": own}, {"Origin": own, "Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}):
        response = await api.post("/api/system/jobs/housekeeping/run", headers=headers)
        assert response.status_code == 202, (headers, response.text)
    # reads stay possible from anywhere on the machine: the browser keeps cross-origin answers from the page
    assert (await api.get("/api/workers", headers={"Origin": "https://evil.example"})).status_code == 200


async def test_token_mode_serves_any_host(token_api: httpx.AsyncClient) -> None:
    """Behind a proxy the Host is the public name: only `none` mode pins it to loopback."""
    response = await token_api.get("/api/health", headers={"Host": "cml.example.com"})
    assert response.status_code == 200


# --- JSON bodies ------------------------------------------------------------------------------------------------


async def test_json_endpoints_take_only_json(token_api: httpx.AsyncClient, bearer: dict[Role, dict[str, str]]) -> None:
    admin = bearer[Role.ADMIN]
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        headers = {**admin, "Content-Type": content_type} if content_type else admin
        response = await token_api.put("/api/system/settings", content=EMPTY_UPDATE, headers=headers)
        assert response.status_code == 415, (content_type, response.status_code)
        assert "application/json" in response.json()["detail"]
        login = await token_api.post("/auth/login", content=b'{"token": "x"}', headers=headers)
        assert login.status_code == 415, (content_type, login.status_code)
    for content_type in ("application/json", "application/json; charset=utf-8", "Application/JSON"):
        response = await token_api.put(
            "/api/system/settings", content=EMPTY_UPDATE, headers={**admin, "Content-Type": content_type}
        )
        assert response.status_code == 200, (content_type, response.text)
    # endpoints without a JSON body keep their own types: a lab upload is YAML
    upload = await token_api.post(
        "/api/workers/nope/labs/import", content=b"nodes: []", headers={**admin, "Content-Type": "application/x-yaml"}
    )
    assert upload.status_code == 404


# --- statuses ---------------------------------------------------------------------------------------------------


def test_every_route_with_a_json_body_checks_the_caller_first() -> None:
    app = create_app(ProcessRole.API, make_settings("sqlite+aiosqlite:///:memory:"))
    with_body = [route for route in api_routes(app) if route.body_field is not None]
    assert len(with_body) >= 6
    assert [r.path for r in with_body if not isinstance(r, JsonBodyRoute)] == [], "route_class=JsonBodyRoute"


async def test_authentication_comes_before_the_body(
    token_api: httpx.AsyncClient, bearer: dict[Role, dict[str, str]]
) -> None:
    json_type = {"Content-Type": "application/json"}
    anonymous = await token_api.post("/api/workers", content=b"{", headers=json_type)
    assert anonymous.status_code == 401, anonymous.text
    wrong_type = await token_api.post("/api/workers", content=b"{", headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 401, "who you are is checked before what you sent"
    viewer = await token_api.post("/api/workers", content=b"{", headers={**bearer[Role.VIEWER], **json_type})
    assert viewer.status_code == 403 and "needs the admin role" in viewer.json()["detail"]
    admin = await token_api.post("/api/workers", content=b"{", headers={**bearer[Role.ADMIN], **json_type})
    assert admin.status_code == 400 and "not valid JSON" in admin.json()["detail"]


async def test_a_chunked_body_over_the_limit_is_413(
    token_api: httpx.AsyncClient, bearer: dict[Role, dict[str, str]]
) -> None:
    async def chunks(total: int) -> AsyncIterator[bytes]:
        yield b'{"values": {"x": "'
        for _ in range(total // 512):
            yield b"a" * 512
        yield b'"}}'

    headers = {**bearer[Role.ADMIN], "Content-Type": "application/json"}
    response = await token_api.put("/api/system/settings", content=chunks(8192), headers=headers)
    assert "content-length" not in response.request.headers, "the body went chunked"
    assert response.status_code == 413, response.text
    assert "larger than 2048 bytes" in response.json()["detail"]
    assert response.headers["content-security-policy"], "the refusal carries the security headers too"
    small = await token_api.put("/api/system/settings", content=chunks(0), headers=headers)
    assert small.status_code == 400 and "Unknown system setting 'x'" in small.json()["detail"]


async def test_405_says_what_is_allowed(api: httpx.AsyncClient) -> None:
    response = await api.delete("/api/system/settings")
    assert response.status_code == 405
    assert set(re.split(r",\s*", response.headers["allow"])) >= {"GET", "PUT"}
    assert response.headers["content-type"] == "application/problem+json"


async def test_json_answers_are_never_cached(api: httpx.AsyncClient) -> None:
    for path in ("/api/workers", "/api/no/such/thing", "/auth/me", "/api/openapi.json"):
        response = await api.get(path)
        assert "json" in response.headers["content-type"], path
        assert response.headers["cache-control"] == "no-store", path
    stream = await api.get("/api/events/stream", headers={"Last-Event-ID": "abc"})
    assert stream.headers["cache-control"] == "no-store"


# --- the API docs page ------------------------------------------------------------------------------------------


async def test_docs_page_loads_nothing_from_elsewhere(api: httpx.AsyncClient) -> None:
    page = await api.get("/api/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert csp == (await api.get("/")).headers["content-security-policy"], "the same policy as the rest"
    assert "unsafe-inline" not in csp and "http" not in csp
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), "no inline script"
    assert not re.search(r"\bstyle=", page.text), "no inline style"
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith("/") and not s.startswith("//") for s in sources), sources
    for source in sources:
        assert (await api.get(source)).status_code == 200, source
    spec = await api.get("/api/openapi.json")
    assert spec.status_code == 200 and spec.json()["paths"]
