"""An SSE stream lives no longer than the credential it was opened with: revoking the token, logging out, the
session expiring or the OIDC provider refusing its refresh ends the streams opened with it, on every API replica,
while everybody else's stream goes on. Real `api` processes on one database (no Redis: the replicas poll)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from cml_cloud_manager.auth import sessions, tokens
from cml_cloud_manager.auth.roles import Role
from cml_cloud_manager.auth.sessions import COOKIE
from cml_cloud_manager.config import Settings
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.migrate import migrate
from cml_cloud_manager.storage.models import SessionRow

from ..conftest import make_settings
from ..e2e.processes import Proc, spawn, wait_ready
from ..sse import Event, Stream, open_stream
from .conftest import oidc_settings
from .oidc_provider import CLIENT_ID, Provider

ENDED_WITHIN = 10.0  # seconds: the replicas poll the outbox every 0.1 s; the deadline only bounds a failure


def _env(settings: Settings, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": "",
        "LOG_LEVEL": "INFO",
        "WORKER_HEARTBEAT_SECONDS": "0.5",
        "RELAY_POLL_INTERVAL": "0.1",
        # The stream's watchdog looks at each stream every quarter heartbeat: expiries are seen within 0.5 s.
        "SSE_HEARTBEAT_SECONDS": "2",
        "AUTH_ADMIN_TOKEN_FILE": str(tmp_path / "admin-token"),
        **extra,
    }


@contextlib.asynccontextmanager
async def _replicas(env: dict[str, str], tmp_path: Path, count: int = 2) -> AsyncIterator[list[Proc]]:
    started = [spawn("api", env, tmp_path) for _ in range(count)]
    try:
        for proc in started:
            await wait_ready(proc)
        yield started
    finally:
        for proc in started:
            proc.stop()


@pytest.fixture
async def token_db(database_url: str, tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(make_settings(database_url, auth_mode="token"))
    await migrate(database)
    yield database
    await database.dispose()


async def _ends(stream: Stream) -> Event:
    """The stream's `ended` event, after which the server closes it."""
    ended = await stream.wait_for(lambda e: e.event == "ended", timeout=ENDED_WITHIN)
    with pytest.raises(EOFError):
        await stream.next(timeout=ENDED_WITHIN)
    return ended


async def _still_live(stream: Stream, trigger: httpx.Response) -> None:
    """The stream goes on: it delivers an event committed after the others ended (`trigger`'s)."""
    assert trigger.status_code < 300, trigger.text
    await stream.wait_for(lambda e: e.type == "auth.token.revoked" and e.data["data"]["name"] == "spare")


def _cookie(login: httpx.Response) -> dict[str, str]:
    assert login.status_code == 200, login.text
    return {"Cookie": f"{COOKIE}={login.cookies[COOKIE]}"}


async def test_revoking_a_token_ends_its_streams_on_every_replica(
    token_db: Database, database_url: str, tmp_path: Path
) -> None:
    alice = await tokens.create(token_db, name="alice", role=Role.OPERATOR)
    bob = await tokens.create(token_db, name="bob", role=Role.VIEWER)
    root = await tokens.create(token_db, name="root", role=Role.ADMIN)
    await tokens.create(token_db, name="spare", role=Role.VIEWER)
    env = _env(make_settings(database_url), tmp_path, AUTH_MODE="token")
    async with _replicas(env, tmp_path) as (first, second), httpx.AsyncClient(timeout=10) as http:
        cookie = _cookie(await http.post(f"{first.url}/auth/login", json={"token": alice}))
        bearer = {"Authorization": f"Bearer {alice}"}
        as_root = {"Authorization": f"Bearer {root}"}
        async with (
            open_stream(first.url, headers=cookie) as cookie_on_first,
            open_stream(second.url, headers=cookie) as cookie_on_second,
            open_stream(second.url, headers=bearer) as bearer_on_second,
            open_stream(first.url, headers={"Authorization": f"Bearer {bob}"}) as bobs,
        ):
            for stream in (cookie_on_first, cookie_on_second, bearer_on_second, bobs):
                await stream.wait_for(lambda e: e.event == "snapshot")
            revoked = await http.delete(f"{second.url}/api/tokens/alice", headers=as_root)
            assert revoked.status_code == 200, revoked.text
            for stream in (cookie_on_first, cookie_on_second, bearer_on_second):
                ended = await _ends(stream)
                assert ended.data == {"reason": "its API token was revoked", "reconnect": False}
                # Nothing relayed from the revocation on reached it: not even the revocation itself.
                assert not any(e.type == "auth.token.revoked" for e in stream.history)
            await _still_live(bobs, await http.delete(f"{first.url}/api/tokens/spare", headers=as_root))
        for replica in (first, second):  # and reconnecting is refused
            for headers in (cookie, bearer):
                refused = await http.get(f"{replica.url}/api/events/stream", headers=headers)
                assert refused.status_code == 401, refused.text


async def test_logging_out_ends_that_sessions_streams_on_every_replica(
    token_db: Database, database_url: str, tmp_path: Path
) -> None:
    alice = await tokens.create(token_db, name="alice", role=Role.OPERATOR)
    root = await tokens.create(token_db, name="root", role=Role.ADMIN)
    await tokens.create(token_db, name="spare", role=Role.VIEWER)
    env = _env(make_settings(database_url), tmp_path, AUTH_MODE="token")
    async with _replicas(env, tmp_path) as (first, second), httpx.AsyncClient(timeout=10) as http:
        laptop = _cookie(await http.post(f"{first.url}/auth/login", json={"token": alice}))
        phone = _cookie(await http.post(f"{second.url}/auth/login", json={"token": alice}))
        async with (
            open_stream(first.url, headers=laptop) as laptop_on_first,
            open_stream(second.url, headers=laptop) as laptop_on_second,
            open_stream(second.url, headers=phone) as phones,
        ):
            for stream in (laptop_on_first, laptop_on_second, phones):
                await stream.wait_for(lambda e: e.event == "snapshot")
            assert (await http.post(f"{first.url}/auth/logout", headers=laptop)).status_code == 204
            for stream in (laptop_on_first, laptop_on_second):
                assert (await _ends(stream)).data == {"reason": "its session ended (logged out)", "reconnect": False}
            # The same person's other session, opened with the same token, is not touched.
            spare = await http.delete(f"{second.url}/api/tokens/spare", headers={"Authorization": f"Bearer {root}"})
            await _still_live(phones, spare)
            assert (await http.get(f"{first.url}/auth/me", headers=phone)).status_code == 200


async def test_an_expired_session_ends_its_stream(token_db: Database, database_url: str, tmp_path: Path) -> None:
    alice = await tokens.create(token_db, name="alice", role=Role.OPERATOR)
    env = _env(make_settings(database_url), tmp_path, AUTH_MODE="token")
    async with _replicas(env, tmp_path, count=1) as (api,), httpx.AsyncClient(timeout=10) as http:
        short, _ = await sessions.create(
            token_db,
            subject="alice",
            roles=frozenset({Role.OPERATOR}),
            ttl=timedelta(seconds=3),
            token_sha256=tokens.digest(alice),
        )
        cookie = {"Cookie": f"{COOKIE}={short}"}
        async with open_stream(api.url, headers=cookie) as stream:
            assert (await _ends(stream)).data == {"reason": "its credential expired", "reconnect": False}
        assert (await http.get(f"{api.url}/auth/me", headers=cookie)).status_code == 401


@pytest.fixture
async def oidc_env(provider: Provider, database_url: str, tmp_path: Path) -> dict[str, str]:
    settings = oidc_settings(database_url, provider, tmp_path)
    db = Database(settings)
    await migrate(db)
    await db.dispose()
    return _env(
        settings,
        tmp_path,
        AUTH_MODE="oidc",
        OIDC_ISSUER=provider.issuer,
        OIDC_CLIENT_ID=CLIENT_ID,
        SESSION_ENCRYPTION_KEYS_FILE=str(tmp_path / "session-keys"),
    )


async def _oidc_sign_in(api: str) -> httpx.AsyncClient:
    """A browser signed in through the provider on `api`; the caller closes it."""
    browser = httpx.AsyncClient(base_url=api, timeout=10)
    start = await browser.get("/auth/login")
    assert start.status_code == 302, start.text
    back = await browser.get(start.headers["location"])
    assert back.status_code == 302, back.text
    assert (await browser.get(back.headers["location"])).status_code == 302
    return browser


async def test_a_refresh_the_provider_refuses_ends_the_sessions_streams_on_every_replica(
    provider: Provider, oidc_env: dict[str, str], tmp_path: Path
) -> None:
    provider.expires_in = 3600
    # Remembering nothing, the replicas read the access expiry this test moves forward in the database.
    async with _replicas({**oidc_env, "AUTH_CACHE_SECONDS": "0"}, tmp_path) as (first, second):
        refused_browser = await _oidc_sign_in(first.url)
        other_browser = await _oidc_sign_in(first.url)
        try:
            cookie = {"Cookie": f"{COOKIE}={refused_browser.cookies[COOKIE]}"}
            others = {"Cookie": f"{COOKIE}={other_browser.cookies[COOKIE]}"}
            async with (
                open_stream(second.url, headers=cookie) as on_second,
                open_stream(first.url, headers=cookie) as on_first,
                open_stream(second.url, headers=others) as other_stream,
            ):
                for stream in (on_first, on_second, other_stream):
                    await stream.wait_for(lambda e: e.event == "snapshot")
                # The provider withdraws the session (user disabled, signed out there); the next refresh, due with
                # the access token about to expire, is refused, and that request on one replica ends the session.
                provider.refresh_status = 400
                await _expire_access(oidc_env, refused_browser.cookies[COOKIE])
                refused = await refused_browser.get("/auth/me")
                assert refused.status_code == 401, refused.text
                for stream in (on_first, on_second):
                    ended = await _ends(stream)
                    assert ended.data == {
                        "reason": "its session ended (the provider refused to refresh it)",
                        "reconnect": False,
                    }
                provider.refresh_status = None
                other_stream.history.clear()
                assert (await other_browser.get("/auth/me")).status_code == 200
                await other_stream.next(timeout=5)  # a heartbeat or an event: anything but the end
        finally:
            await refused_browser.aclose()
            await other_browser.aclose()


async def test_a_stream_refreshes_its_own_session_and_ends_when_refused(
    provider: Provider, oidc_env: dict[str, str], tmp_path: Path
) -> None:
    """No request comes while the stream is open: the stream itself refreshes when the access token is due."""
    provider.expires_in = 62  # due for refresh (60 s before expiry) two seconds after each answer
    async with _replicas(oidc_env, tmp_path, count=1) as (api,):
        browser = await _oidc_sign_in(api.url)
        try:
            cookie = {"Cookie": f"{COOKIE}={browser.cookies[COOKIE]}"}
            async with open_stream(api.url, headers=cookie) as stream:
                await stream.wait_for(lambda e: e.event == "snapshot")
                asked = provider.token_requests
                await _poll(lambda: provider.token_requests >= asked + 2, "the stream refreshed its session")
                provider.refresh_status = 400
                refused = "its credential was refused: The identity provider refused the login (400)"
                assert (await _ends(stream)).data == {"reason": refused, "reconnect": False}
            assert (await browser.get("/auth/me")).status_code == 401
        finally:
            await browser.aclose()


async def _expire_access(env: dict[str, str], session_id: str) -> None:
    """Make the session's access token due for refresh now (as if an hour had passed)."""
    db = Database(make_settings(env["DATABASE_URL"]))
    try:
        async with db.session() as session:
            row = await session.get(SessionRow, tokens.digest(session_id))
            assert row is not None
            row.access_expires_at = datetime.now(UTC)
    finally:
        await db.dispose()


async def _poll(condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.05)
