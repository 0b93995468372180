"""Revoking an API token ends its browser sessions at once on every API replica: two real `api` processes on one
database, revoked through the command line or the API.

The replicas remember verified credentials for an hour here (AUTH_CACHE_SECONDS), so a refusal can only come from
the outbox: the replica that revoked refuses at once, the other as soon as its relay reads the event."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from cml_cloud_manager.auth import sessions, tokens
from cml_cloud_manager.auth.roles import Role
from cml_cloud_manager.auth.sessions import COOKIE
from cml_cloud_manager.config import Settings
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.migrate import migrate
from cml_cloud_manager.storage.models import EventRow

from ..conftest import make_settings, serve_api
from ..e2e.processes import Proc, spawn, wait_ready


@pytest.fixture
def token_settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, auth_mode="token", auth_admin_token_file=tmp_path / "admin-token")


@pytest.fixture
async def db(token_settings: Settings) -> AsyncIterator[Database]:
    database = Database(token_settings)
    await migrate(database)
    yield database
    await database.dispose()


def _env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": "",
        "AUTH_MODE": "token",
        "AUTH_ADMIN_TOKEN_FILE": str(tmp_path / "admin-token"),
        "LOG_LEVEL": "INFO",
        "WORKER_HEARTBEAT_SECONDS": "0.5",
        "AUTH_CACHE_SECONDS": "3600",
        "RELAY_POLL_INTERVAL": "0.25",
    }


async def refused_within(http: httpx.AsyncClient, url: str, headers: dict[str, str], seconds: float) -> float:
    """Poll `GET url` until it answers 401; returns how long that took (fails after `seconds`)."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    while True:
        answer = await http.get(url, headers=headers)
        if answer.status_code == 401:
            return loop.time() - began
        assert answer.status_code == 200, answer.text
        assert loop.time() - began < seconds, f"{url} still accepted after {seconds}s"
        await asyncio.sleep(0.02)


@pytest.fixture
async def replicas(token_settings: Settings, db: Database, tmp_path: Path) -> AsyncIterator[list[Proc]]:
    started = [spawn("api", _env(token_settings, tmp_path), tmp_path) for _ in range(2)]
    try:
        for proc in started:
            await wait_ready(proc)
        yield started
    finally:
        for proc in started:
            proc.stop()


async def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "cml_cloud_manager", "token", *args]
    return await asyncio.to_thread(
        subprocess.run, argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("via", ["cli", "api"])
async def test_revoking_a_token_ends_its_sessions_on_every_replica(
    via: str, replicas: list[Proc], db: Database, token_settings: Settings, tmp_path: Path
) -> None:
    alice = await tokens.create(db, name="alice", role=Role.OPERATOR)
    root = await tokens.create(db, name="root", role=Role.ADMIN)
    env = _env(token_settings, tmp_path)
    first, second = replicas
    async with httpx.AsyncClient(timeout=10) as http:
        login = await http.post(f"{first.url}/auth/login", json={"token": alice})
        assert login.status_code == 200, login.text
        browser = {"Cookie": f"{COOKIE}={login.cookies[COOKIE]}", "X-CSRF-Token": login.json()["csrf_token"]}
        as_alice = {"Authorization": f"Bearer {alice}"}
        for replica in replicas:  # the cookie from one replica works on both, reads and writes
            assert (await http.get(f"{replica.url}/auth/me", headers=browser)).json()["user"]["name"] == "alice"
            assert (await http.get(f"{replica.url}/auth/me", headers=as_alice)).status_code == 200
            write = await http.post(f"{replica.url}/api/workers/nope/stop", headers=browser)
            assert write.status_code == 404, write.text  # past authentication and CSRF: no such worker

        listed = await _cli(env, "list")
        assert listed.returncode == 0, listed.stderr
        line = next(line for line in listed.stdout.splitlines() if " alice " in line)
        assert "operator" in line and "database" in line and line.split()[-1] == "1"
        assert alice not in listed.stdout and tokens.digest(alice) not in listed.stdout

        if via == "cli":
            revoked = await _cli(env, "revoke", "alice")
            assert revoked.returncode == 0, revoked.stderr
            assert "revoked alice (operator" in revoked.stdout and "ended 1 browser session" in revoked.stdout
        else:
            answer = await http.delete(f"{second.url}/api/tokens/alice", headers={"Authorization": f"Bearer {root}"})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert {k: body[k] for k in ("name", "role", "sessions_ended", "revoked_by")} == {
                "name": "alice",
                "role": "operator",
                "sessions_ended": 1,
                "revoked_by": "root",
            }

        if via == "api":  # the replica that revoked: at once
            assert (await http.get(f"{second.url}/auth/me", headers=browser)).status_code == 401
            assert (await http.get(f"{second.url}/auth/me", headers=as_alice)).status_code == 401
        for replica in replicas:  # both, within the relay's lag (it polls every 0.25 s here)
            await refused_within(http, f"{replica.url}/auth/me", browser, 5)
            await refused_within(http, f"{replica.url}/auth/me", as_alice, 5)
            me = await http.get(f"{replica.url}/auth/me", headers=browser)
            assert me.status_code == 401, (replica.url, me.text)
            write = await http.post(f"{replica.url}/api/workers/nope/stop", headers=browser)
            assert write.status_code == 401, (replica.url, write.text)
            bearer = await http.get(f"{replica.url}/api/workers", headers={"Authorization": f"Bearer {alice}"})
            assert bearer.status_code == 401
        assert (await http.post(f"{second.url}/auth/login", json={"token": alice})).status_code == 401
        assert (await http.get(f"{first.url}/auth/me", headers={"Authorization": f"Bearer {root}"})).status_code == 200

    async with db.session(write=False) as session:
        events = (await session.scalars(select(EventRow).where(EventRow.type == "auth.token.revoked"))).all()
    [event] = events
    assert event.data["name"] == "alice" and event.data["sessions_ended"] == 1
    assert set(event.data) == {"id", "name", "role", "sessions_ended", "revoked_by"}
    assert alice not in str(event.data) and tokens.digest(alice) not in str(event.data)
    listed = await _cli(env, "list")
    assert " alice " not in listed.stdout and " root " in listed.stdout


async def test_unknown_tokens_and_tokens_from_the_file_are_explained(
    db: Database, token_settings: Settings, tmp_path: Path
) -> None:
    env = _env(token_settings, tmp_path)
    unknown = await _cli(env, "revoke", "nobody")
    assert unknown.returncode == 1 and "No token is named 'nobody'" in unknown.stderr

    admin, bob = "file-admin-token-0123456789", "file-bob-token-0123456789"
    tokens_file = tmp_path / "tokens"

    def write(*lines: tuple[str, str, str]) -> None:
        tokens_file.write_text(
            "".join(f"{role} {name} {hashlib.sha256(t.encode()).hexdigest()}\n" for role, name, t in lines)
        )

    write(("admin", "ops", admin), ("operator", "bob", bob))
    settings = make_settings(token_settings.database_url, auth_mode="token", auth_tokens_file=tokens_file)
    async with serve_api(settings) as api:
        login = await api.post("/auth/login", json={"token": bob})
        cookie = {"Cookie": f"{COOKIE}={login.cookies[COOKIE]}"}
        as_admin = {"Authorization": f"Bearer {admin}"}
        listed = {t["name"]: t for t in (await api.get("/api/tokens", headers=as_admin)).json()["items"]}
        assert listed["bob"] == {
            "id": None,
            "name": "bob",
            "role": "operator",
            "source": "file",
            "created_at": None,
            "sessions": 1,
        }
        in_file = await api.delete("/api/tokens/bob", headers=as_admin)
        assert in_file.status_code == 409 and "remove its line there" in in_file.json()["detail"]
        missing = await api.delete("/api/tokens/nobody", headers=as_admin)
        assert missing.status_code == 404 and "token list" in missing.json()["detail"]
        assert (await api.get("/auth/me", headers=cookie)).status_code == 200

    write(("admin", "ops", admin))  # bob's line removed, then the API restarted
    async with serve_api(settings) as api:
        assert (await api.get("/auth/me", headers=cookie)).status_code == 401


async def test_a_token_mode_session_tied_to_no_token_is_refused(db: Database, token_settings: Settings) -> None:
    """Sessions of earlier versions (the migration deletes them) or of OIDC mode carry no token: not in token mode."""
    session_id, _ = await sessions.create(db, subject="someone", roles=frozenset({Role.ADMIN}), ttl=timedelta(hours=1))
    async with serve_api(token_settings) as api:
        assert (await api.get("/auth/me", headers={"Cookie": f"{COOKIE}={session_id}"})).status_code == 401


async def test_logging_out_ends_the_session_on_every_replica(
    replicas: list[Proc], db: Database, token_settings: Settings
) -> None:
    bob = await tokens.create(db, name="bob", role=Role.VIEWER)
    first, second = replicas
    async with httpx.AsyncClient(timeout=10) as http:
        login = await http.post(f"{first.url}/auth/login", json={"token": bob})
        browser = {"Cookie": f"{COOKIE}={login.cookies[COOKIE]}", "X-CSRF-Token": login.json()["csrf_token"]}
        for replica in replicas:
            assert (await http.get(f"{replica.url}/auth/me", headers=browser)).status_code == 200
        assert (await http.post(f"{second.url}/auth/logout", headers=browser)).status_code == 204
        assert (await http.get(f"{second.url}/auth/me", headers=browser)).status_code == 401
        await refused_within(http, f"{first.url}/auth/me", browser, 5)
        # The token itself still works: only the session ended.
        bearer = {"Authorization": f"Bearer {bob}"}
        assert (await http.get(f"{first.url}/auth/me", headers=bearer)).status_code == 200
    async with db.session(write=False) as session:
        [event] = (await session.scalars(select(EventRow).where(EventRow.type == "auth.session.ended"))).all()
    assert event.data == {
        "session": sessions.ref(tokens.digest(login.cookies[COOKIE])),
        "subject": "bob",
        "reason": "logged out",
    }
    assert login.cookies[COOKIE] not in str(event.data) and tokens.digest(login.cookies[COOKIE]) not in str(event.data)
