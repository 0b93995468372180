"""The client address behind the shipped nginx config, on a real `api` process behind a real nginx (see `nginx`):
the login limit counts the real client whatever `X-Forwarded-For` it sends, and only the configured proxy is
believed. Every process runs on this machine, told apart by loopback source addresses: nginx connects to the API
from 127.0.0.1 (the only address in FORWARDED_ALLOW_IPS), clients from 127.0.0.3 and 127.0.0.4."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from .nginx import shipped_nginx
from .processes import Proc, spawn, wait_ready

pytestmark = pytest.mark.e2e
PROXY_ADDRESS, CLIENT, OTHER_CLIENT = "127.0.0.1", "127.0.0.3", "127.0.0.4"
PER_MINUTE = 10  # LOGIN_ATTEMPTS_PER_MINUTE's default: the API runs as shipped


@pytest.fixture
async def api(stack_env: dict[str, str], tmp_path: Path) -> AsyncIterator[Proc]:
    env = {
        **stack_env,
        "AUTH_MODE": "token",
        "AUTH_ADMIN_TOKEN_FILE": str(tmp_path / "admin-token"),
        "FORWARDED_ALLOW_IPS": PROXY_ADDRESS,
    }
    proc = spawn("api", env, tmp_path)
    try:
        await wait_ready(proc)
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def proxy(api: Proc) -> AsyncIterator[str]:
    assert api.port is not None
    async with shipped_nginx(api.port) as url:
        yield url


def client_from(address: str, base_url: str) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=base_url, transport=transport, timeout=10)


async def logins(client: httpx.AsyncClient, count: int, forged: str) -> list[int]:
    statuses = []
    for i in range(count):
        headers = {"X-Forwarded-For": forged.format(i=i)} if forged else {}
        response = await client.post("/auth/login", json={"token": "wrong"}, headers=headers)
        statuses.append(response.status_code)
    return statuses


async def logged(proc: Proc, pattern: str, timeout: float = 10) -> list[str]:
    """Lines of the process's log matching `pattern`, waiting (with a deadline) until there is one."""
    deadline = time.monotonic() + timeout
    while True:
        found = re.findall(pattern, proc.output())
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


async def test_forged_forwarded_for_does_not_escape_the_login_limit(api: Proc, proxy: str) -> None:
    async with client_from(CLIENT, proxy) as client:
        # the reproduction: 25 attempts, a new forged address in each, nginx appending the real one
        statuses = await logins(client, 25, "198.51.100.{i}, 172.18.0.5")
    assert statuses == [401] * PER_MINUTE + [429] * (25 - PER_MINUTE), statuses
    failed_from = await logged(api, r"failed token login from (\S+)")
    assert set(failed_from) == {CLIENT}, f"the limiter and the log name the real client: {set(failed_from)}"


async def test_only_the_configured_proxy_is_believed(api: Proc, proxy: str) -> None:
    async with client_from(CLIENT, proxy) as client:
        assert await logins(client, PER_MINUTE + 1, "") == [401] * PER_MINUTE + [429]
    # Straight to the API from another address, claiming to be a fresh client: the header is not believed, so
    # this peer gets its own allowance, not a fresh one per forged address
    async with client_from(OTHER_CLIENT, api.url) as direct:
        statuses = await logins(direct, PER_MINUTE + 1, "203.0.113.{i}")
    assert statuses == [401] * PER_MINUTE + [429], statuses
    assert set(await logged(api, r"failed token login from (\S+)")) == {CLIENT, OTHER_CLIENT}


@pytest.mark.parametrize("everyone", ["*", "0.0.0.0/0", "127.0.0.1,::/0"])
async def test_trusting_every_peer_is_refused_at_start(
    everyone: str, stack_env: dict[str, str], tmp_path: Path
) -> None:
    proc = spawn("api", {**stack_env, "FORWARDED_ALLOW_IPS": everyone}, tmp_path)
    try:
        code = await asyncio.to_thread(proc.popen.wait, 30)
    finally:
        proc.stop()
    assert code != 0
    assert re.search(
        r"FORWARDED_ALLOW_IPS: '[^']+' (trusts X-Forwarded-For from every peer|is every address)", proc.output()
    )
