"""The real product in a real browser: AWS emulator, CML simulator, `api` and `worker` processes, headless Chromium.

One stack per test module (starting it is the slow part); each test opens its own browser context. Playwright
drives Debian's Chromium (`apt-get install chromium`), never a browser build it would download.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from cml_cloud_manager.sandbox.run import sandbox_env
from cml_cloud_manager.sandbox.seed import put_metrics, seed_fleet
from cml_cloud_manager.sandbox.services import start_cml_simulator, start_moto
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.migrate import migrate

from ..conftest import BACKEND, PG_BASE, REDIS_URL, _create_pg_database, _drop_pg_database, make_settings
from ..e2e import event_schemas
from ..e2e.conftest import Sandbox
from ..e2e.processes import Proc, free_port, spawn, wait_ready

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
ARTIFACTS = ROOT / "test-artifacts"
FLEET_SIZE = 5
# One token per role, given to the API through AUTH_TOKENS_FILE (which holds only their SHA-256).
TOKENS = {role: f"ui-test-{role}-{uuid.uuid4().hex}" for role in ("admin", "operator", "viewer")}

# Live updates travel command → worker → database → relay → SSE → refetch; give them room on a busy CI machine.
expect.set_options(timeout=30_000)


@dataclass
class Stack(Sandbox):
    """A running stack; `api` and `worker` can be stopped and started again (the API on the same port)."""

    work_dir: Path
    port: int
    api: Proc | None = None
    worker: Proc | None = None
    started: list[Proc] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, role: str = "admin") -> Any:
        headers = {"Authorization": f"Bearer {TOKENS[role]}"}
        response = httpx.get(f"{self.url}{path}", headers=headers, timeout=10)
        response.raise_for_status()
        return response.json()

    def database(self) -> Database:
        return Database(make_settings(self.env["DATABASE_URL"]))

    async def start_api(self) -> Proc:
        """Always on the stack's port, so the browser's EventSource finds the API again after a restart."""
        self.api = _spawn_api(self.env, self.work_dir, self.port)
        self.started.append(self.api)
        await wait_ready(self.api)
        return self.api

    async def start_worker(self) -> Proc:
        self.worker = spawn("worker", self.env, self.work_dir, cwd=self.work_dir)
        self.started.append(self.worker)
        await wait_ready(self.worker)
        return self.worker

    def stop_api(self) -> None:
        if self.api is not None:
            self.api.stop()
            self.api = None

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.popen.poll() is None:
                proc.stop()


def _spawn_api(env: dict[str, str], work_dir: Path, port: int) -> Proc:
    """Like e2e's spawn(), which always picks a new port."""
    log = work_dir / f"api-{uuid.uuid4().hex[:6]}.log"
    full_env = {**os.environ, **env, "APP_PORT": str(port)}
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "cml_cloud_manager", "api"],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=work_dir,
        )
    return Proc("api", popen, log, port, None, env)


def _check_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"No Chromium at {CHROMIUM}: install it with `apt-get install -y chromium` (or set CHROMIUM_PATH)")


async def _fleet_ready(stack: Stack, timeout: float = 90) -> None:
    """Auto-import found every instance, and every running worker has CML available and its labs listed."""
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {TOKENS['admin']}"}
    async with httpx.AsyncClient(base_url=stack.url, headers=headers, timeout=5) as client:
        while time.monotonic() < deadline:
            workers = (await client.get("/api/workers")).raise_for_status().json()["items"]
            running = [w for w in workers if w["status"] == "running"]
            if len(workers) == FLEET_SIZE and running and all(w["service_status"] == "available" for w in running):
                labs = [(await client.get(f"/api/workers/{w['id']}/labs")).json()["items"] for w in running]
                if all(labs):
                    return
            await asyncio.sleep(0.25)
    worker_log = stack.worker.output()[-3000:] if stack.worker else ""
    raise AssertionError(f"the demo fleet was not ready after {timeout}s:\n{worker_log}")


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    work_dir = tmp_path_factory.mktemp("ui-stack")
    pg_name = await _create_pg_database() if BACKEND == "postgres" else None
    database_url = f"{PG_BASE}/{pg_name}" if pg_name else f"sqlite+aiosqlite:///{work_dir}/ui.db"
    db = Database(make_settings(database_url))
    await migrate(db)
    await db.dispose()
    tokens_file = work_dir / "tokens"
    tokens_file.write_text(
        "".join(f"{role} ui-{role} {hashlib.sha256(token.encode()).hexdigest()}\n" for role, token in TOKENS.items())
    )
    aws = start_moto(work_dir)
    cml = start_cml_simulator(work_dir)
    ids = seed_fleet(aws.url)
    put_metrics(aws.url, ids, 0)
    env = sandbox_env(aws.url, cml.url) | {
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL if BACKEND == "postgres" else "",
        "REDIS_PREFIX": f"cmlui-{uuid.uuid4().hex[:8]}",
        "AUTH_MODE": "token",
        "AUTH_TOKENS_FILE": str(tokens_file),
        "AUTH_ADMIN_TOKEN_FILE": str(work_dir / "admin-token"),
        "LOGIN_ATTEMPTS_PER_MINUTE": "1000",
        "LOG_LEVEL": "INFO",
        "WORKER_HEARTBEAT_SECONDS": "0.5",
        "WORKER_ALIVE_SECONDS": "3",
        "LEASE_SECONDS": "3",
        "RELAY_POLL_INTERVAL": "0.1",
        "COMMAND_POLL_INTERVAL": "0.2",
        "SHUTDOWN_GRACE_SECONDS": "5",
        "AUTO_IMPORT_INTERVAL": "2",
        "WORKER_METRICS_INTERVAL": "2",
        "LABS_REFRESH_INTERVAL": "5",
        "IDLE_DETECTION_ENABLED": "false",
        "HOUSEKEEPING_ENABLED": "false",
        "CML_TIMEOUT": "2",
    }
    running = Stack(aws.url, cml.url, ids, env, work_dir, free_port())
    try:
        await running.start_api()
        await running.start_worker()
        await _fleet_ready(running)
        yield running
        # Every event the module's tests made the stack produce, against its type's published schema.
        await event_schemas.fetch(running.url, {"Authorization": f"Bearer {TOKENS['viewer']}"})
        running.stop_all()
        await event_schemas.check(database_url, work_dir)
    finally:
        running.stop_all()
        cml.stop()
        aws.stop()
        if pg_name:
            await _drop_pg_database(pg_name)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    _check_chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


# Chromium logs every non-2xx response it loads (the UI probes endpoints that may not exist yet) and every
# dropped connection (the restart test drops them on purpose). Uncaught errors and the UI's console.error fail.
EXPECTED_CONSOLE = ("Failed to load resource", "net::ERR_")


@pytest.fixture
async def anonymous_page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A fresh browser context (own cookies, own localStorage) that fails the test on any script error."""
    context = await browser.new_context(viewport={"width": 1400, "height": 900}, color_scheme="light")
    opened = await context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith(EXPECTED_CONSOLE):
            problems.append(f"console.error: {message.text}")

    opened.on("console", on_console)
    opened.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    yield opened
    ARTIFACTS.mkdir(exist_ok=True)
    await opened.screenshot(path=ARTIFACTS / f"{request.node.name}-last.png", full_page=True)
    await context.close()
    assert not problems, "the page reported errors:\n" + "\n".join(problems)


async def sign_in(page: Page, stack: Stack, role: str) -> None:
    """The session cookie, as the login form would get it (the form itself is tested in test_roles_ui)."""
    response = await page.request.post(f"{stack.url}/auth/login", data={"token": TOKENS[role]})
    assert response.ok, await response.text()


@pytest.fixture
async def page(anonymous_page: Page, stack: Stack) -> Page:
    """Signed in as an admin, who sees every action."""
    await sign_in(anonymous_page, stack, "admin")
    return anonymous_page


async def screenshot(page: Page, name: str) -> None:
    """Always into test-artifacts/ (gitignored, for CI); into docs/screenshots/ for the README only when missing
    or with UPDATE_SCREENSHOTS=1, so an ordinary test run leaves the work tree clean."""
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / name, full_page=True)
    if os.environ.get("UPDATE_SCREENSHOTS") == "1" or not (SCREENSHOTS / name).exists():
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (SCREENSHOTS / name).write_bytes((ARTIFACTS / name).read_bytes())
