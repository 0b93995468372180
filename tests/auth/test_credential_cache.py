"""Token auth reads the database once per credential, not once per request (AUTH_CACHE_SECONDS)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from cml_cloud_manager.auth import tokens
from cml_cloud_manager.auth.cache import CredentialCache
from cml_cloud_manager.auth.roles import Role
from cml_cloud_manager.auth.sessions import COOKIE
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.migrate import migrate

from ..conftest import make_settings, serve_api


@pytest.fixture
def credential_reads() -> Iterator[list[str]]:
    """Every statement any engine of this process runs against the tokens or sessions tables."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "api_tokens" in statement or "FROM sessions" in statement:
            seen.append(statement)

    event.listen(Engine, "before_cursor_execute", note)
    yield seen
    event.remove(Engine, "before_cursor_execute", note)


@pytest.mark.parametrize("cache_seconds", [10.0, 0.0])
async def test_a_credential_is_read_once_then_remembered(
    database_url: str, tmp_path: Path, credential_reads: list[str], cache_seconds: float
) -> None:
    settings = make_settings(
        database_url,
        auth_mode="token",
        auth_admin_token_file=tmp_path / "admin-token",
        auth_cache_seconds=cache_seconds,
    )
    db = Database(settings)
    await migrate(db)
    token = await tokens.create(db, name="carol", role=Role.VIEWER)
    await db.dispose()
    async with serve_api(settings) as api:
        login = await api.post("/auth/login", json={"token": token})
        assert login.status_code == 200
        cookie = {"Cookie": f"{COOKIE}={login.cookies[COOKIE]}"}
        bearer = {"Authorization": f"Bearer {token}"}
        credential_reads.clear()
        for _ in range(20):
            assert (await api.get("/auth/me", headers=bearer)).status_code == 200
            assert (await api.get("/auth/me", headers=cookie)).status_code == 200
        reads = len(credential_reads)
        unknown = await api.get("/auth/me", headers={"Authorization": "Bearer not-a-token"})
        assert unknown.status_code == 401
        assert (await api.get("/auth/me", headers={"Authorization": "Bearer not-a-token"})).status_code == 401
        unknown_reads = len(credential_reads) - reads
    if cache_seconds:
        assert reads == 2, credential_reads  # the token once, the session once
    else:
        assert reads == 40, credential_reads
    assert unknown_reads == 2  # an unknown token is never remembered


def test_expired_and_evicted_entries_are_gone() -> None:
    cache: CredentialCache[str] = CredentialCache(ttl_seconds=0.0)
    cache.put("a", "x")
    assert cache.get("a") is None and len(cache) == 0  # 0: remember nothing
    cache = CredentialCache(ttl_seconds=60, max_entries=2)
    for key in "abc":
        cache.put(key, key.upper())
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (None, "B", "C")
    cache.ttl = -1  # entries put now are already expired
    cache.put("d", "D")
    assert cache.get("d") is None
