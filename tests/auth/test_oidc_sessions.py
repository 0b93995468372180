"""OIDC browser sessions: the login is bound to the browser that started it, the provider's tokens are encrypted at
rest (with key rotation), and a refresh the provider refuses ends the session at once."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select

from cml_cloud_manager.auth.keys import KeysUnavailable, load_cipher
from cml_cloud_manager.auth.sessions import COOKIE
from cml_cloud_manager.config import Settings
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import SessionRow

from ..conftest import make_settings, serve_api
from .conftest import oidc_settings, sign_in
from .oidc_provider import Provider


async def _sessions(settings: Settings) -> list[SessionRow]:
    db = Database(settings)
    try:
        async with db.session(write=False) as session:
            return list((await session.scalars(select(SessionRow))).all())
    finally:
        await db.dispose()


def _cookie(response: httpx.Response, name: str) -> str:
    found = [value for value in response.headers.get_list("set-cookie") if value.startswith(f"{name}=")]
    assert len(found) == 1, response.headers.get_list("set-cookie")
    return found[0]


# --- login CSRF ------------------------------------------------------------------------------------------------


async def test_the_callback_only_signs_in_the_browser_that_started_the_login(
    oidc_api: httpx.AsyncClient, provider: Provider
) -> None:
    start = await oidc_api.get("/auth/login")
    login_cookie = _cookie(start, "cml_login")
    for attribute in ("HttpOnly", "SameSite=lax", "Path=/auth/callback", "Max-Age=600"):
        assert attribute in login_cookie
    assert "Secure" not in login_cookie  # plain HTTP here; see the next test
    async with httpx.AsyncClient() as attacker_at_provider:
        back = await attacker_at_provider.get(start.headers["location"])
    attackers_link = str(oidc_api.base_url.join(back.headers["location"]))  # the attacker's code and state

    async with httpx.AsyncClient() as victim:  # never started a login: no cookie at all
        refused = await victim.get(attackers_link)
        assert refused.status_code == 400
        assert "did not start this sign-in" in refused.json()["detail"]
        assert not any(c.startswith(f"{COOKIE}=") for c in refused.headers.get_list("set-cookie"))
        # A victim with a login of their own in progress is refused too.
        assert (await victim.get(str(oidc_api.base_url.join("/auth/login")))).status_code == 302
        refused = await victim.get(attackers_link)
        assert refused.status_code == 400 and "started in another browser" in refused.json()["detail"]
        assert (await victim.get(str(oidc_api.base_url.join("/auth/me")))).status_code == 401

    # The login is still there for the browser that started it.
    finished = await oidc_api.get(back.headers["location"])
    assert finished.status_code == 302
    assert "Max-Age=0" in _cookie(finished, "cml_login")
    assert (await oidc_api.get("/auth/me")).json()["user"]["name"] == "alice"


async def test_the_login_cookie_is_secure_over_https(provider: Provider, database_url: str, tmp_path: Path) -> None:
    settings = oidc_settings(database_url, provider, tmp_path, session_cookie_secure="true")
    async with serve_api(settings) as api:
        start = await api.get("/auth/login")
    assert "Secure" in _cookie(start, "cml_login")


# --- provider tokens at rest --------------------------------------------------------------------------------------


async def test_provider_tokens_are_stored_encrypted_and_keys_rotate(
    provider: Provider, database_url: str, tmp_path: Path
) -> None:
    old, new, unrelated = (Fernet.generate_key().decode() for _ in range(3))
    provider.expires_in = 30  # inside the refresh margin: every request refreshes

    def settings(keys: str) -> Settings:
        return oidc_settings(database_url, provider, tmp_path, session_encryption_keys=keys)

    async with serve_api(settings(old)) as api:
        assert (await sign_in(api)).status_code == 302
        cookie = {"Cookie": f"{COOKIE}={api.cookies[COOKIE]}"}
    issued = provider.issued[-1]
    [row] = await _sessions(settings(old))
    assert row.refresh_token and row.id_token
    for clear in (issued["refresh_token"], issued["id_token"]):
        assert clear not in row.refresh_token and clear not in row.id_token
    assert Fernet(old).decrypt(row.refresh_token.encode()).decode() == issued["refresh_token"]
    assert Fernet(old).decrypt(row.id_token.encode()).decode() == issued["id_token"]

    # Rotation, step 1: the new key in front. The session still opens, and its refresh re-encrypts with the new key.
    async with serve_api(settings(f"{new},{old}")) as api:
        me = await api.get("/auth/me", headers=cookie)
    assert me.status_code == 200, me.text
    refreshed = provider.issued[-1]
    assert refreshed is not issued
    [row] = await _sessions(settings(new))
    assert row.refresh_token and row.id_token
    assert Fernet(new).decrypt(row.refresh_token.encode()).decode() == refreshed["refresh_token"]
    assert Fernet(new).decrypt(row.id_token.encode()).decode() == refreshed["id_token"]
    with pytest.raises(InvalidToken):
        Fernet(old).decrypt(row.refresh_token.encode())

    # Step 2: the old key dropped. The session lives on.
    async with serve_api(settings(new)) as api:
        assert (await api.get("/auth/me", headers=cookie)).status_code == 200

    # Keys that open nothing: the session cannot be refreshed, so it ends.
    async with serve_api(settings(unrelated)) as api:
        refused = await api.get("/auth/me", headers=cookie)
        assert refused.status_code == 401 and "sign in again" in refused.json()["detail"]
    assert await _sessions(settings(new)) == []


async def test_without_keys_one_is_generated_privately_and_reused(
    provider: Provider, database_url: str, tmp_path: Path
) -> None:
    provider.expires_in = 30
    settings = oidc_settings(database_url, provider, tmp_path)
    async with serve_api(settings) as api:
        assert (await sign_in(api)).status_code == 302
        cookie = {"Cookie": f"{COOKIE}={api.cookies[COOKIE]}"}
    path = settings.session_encryption_keys_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = path.read_text().strip()
    [row] = await _sessions(settings)
    assert row.refresh_token
    assert Fernet(key).decrypt(row.refresh_token.encode()).decode() == provider.issued[-1]["refresh_token"]
    async with serve_api(settings) as api:  # a restart (or another replica sharing the file) reads the same key
        assert (await api.get("/auth/me", headers=cookie)).status_code == 200
    assert path.read_text().strip() == key


def test_a_key_file_that_cannot_be_created_is_named_with_the_remedy(tmp_path: Path) -> None:
    (tmp_path / "not-a-directory").write_text("")
    settings = make_settings(
        "sqlite+aiosqlite:///:memory:", session_encryption_keys_file=tmp_path / "not-a-directory" / "keys"
    )
    with pytest.raises(KeysUnavailable, match="set SESSION_ENCRYPTION_KEYS"):
        load_cipher(settings)


# --- refresh ---------------------------------------------------------------------------------------------------


async def test_a_refresh_the_provider_refuses_ends_the_session_at_once(
    oidc_api: httpx.AsyncClient, provider: Provider
) -> None:
    provider.expires_in = 30
    await sign_in(oidc_api)
    assert (await oidc_api.get("/auth/me")).status_code == 200
    provider.refresh_status = 400  # e.g. the user was disabled or signed out at the provider
    refused = await oidc_api.get("/auth/me")
    assert refused.status_code == 401 and "refused" in refused.json()["detail"]
    asked = provider.token_requests
    provider.refresh_status = None  # even once the provider would answer again, the session is over
    for path in ("/auth/me", "/api/workers"):
        assert (await oidc_api.get(path)).status_code == 401
    assert provider.token_requests == asked


async def test_a_provider_that_cannot_answer_leaves_the_session(
    oidc_api: httpx.AsyncClient, provider: Provider
) -> None:
    provider.expires_in = 30
    await sign_in(oidc_api)
    provider.refresh_status = 503
    down = await oidc_api.get("/auth/me")
    assert down.status_code == 503 and "identity provider failed" in down.json()["detail"]
    provider.refresh_status = None
    assert (await oidc_api.get("/auth/me")).status_code == 200
