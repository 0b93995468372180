from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from cml_cloud_manager.sandbox.run import sandbox_env
from cml_cloud_manager.sandbox.seed import REGION, put_metrics, seed_fleet
from cml_cloud_manager.sandbox.services import start_cml_simulator, start_moto
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.migrate import migrate

from ..conftest import BACKEND, REDIS_URL, make_settings
from . import event_schemas
from .faults import Blackhole, PrivatePostgres, PrivateRedis, SilentListener
from .processes import Proc, spawn, wait_ready

pytestmark = pytest.mark.e2e


@pytest.fixture
async def stack_env(database_url: str) -> dict[str, str]:
    """Environment for processes of one stack: on PostgreSQL runs they also share a real Redis."""
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL if BACKEND == "postgres" else "",
        "REDIS_PREFIX": f"cmltest-{uuid.uuid4().hex[:8]}",
        "LOG_LEVEL": "INFO",
        "WORKER_HEARTBEAT_SECONDS": "0.5",
        "WORKER_ALIVE_SECONDS": "3",
        "LEASE_SECONDS": "3",
        "RELAY_POLL_INTERVAL": "0.1",
        "COMMAND_POLL_INTERVAL": "0.2",
        "SHUTDOWN_GRACE_SECONDS": "5",
        "HOUSEKEEPING_INTERVAL": "1",
        "AUTH_MODE": "none",  # access control has its own tests
    }
    db = Database(make_settings(database_url))
    await migrate(db)
    await db.dispose()
    return env


@pytest.fixture
async def db_of(stack_env: dict[str, str]) -> AsyncIterator[Database]:
    db = Database(make_settings(stack_env["DATABASE_URL"]))
    yield db
    await db.dispose()


Start = Callable[..., Awaitable["Proc"]]


@pytest.fixture
async def start(stack_env: dict[str, str], database_url: str, tmp_path: Path) -> AsyncIterator[Start]:
    """Starts processes of the test's stack; afterwards stops them, and checks every event they stored in the
    test's database against its type's published schema (`event_schemas`)."""
    procs: list[Proc] = []

    async def _start(role: str, *args: str, **env: str) -> Proc:
        proc = spawn(role, {**stack_env, **env}, tmp_path, *args)
        procs.append(proc)
        await wait_ready(proc)
        return proc

    yield _start
    try:
        await event_schemas.fetch_from_any(procs)
    finally:
        for proc in procs:
            if proc.popen.poll() is None:
                proc.stop()
    await event_schemas.check(database_url, tmp_path)


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.kill()


@pytest.fixture
async def private_pg() -> AsyncIterator[PrivatePostgres]:
    """A PostgreSQL cluster of the test's own, started; stopped and deleted afterwards."""
    # Not under pytest's tmp_path: the `postgres` user must be able to reach the directory.
    directory = Path(tempfile.mkdtemp(prefix="cmltest-pg-"))
    server = PrivatePostgres(directory)
    await asyncio.to_thread(server.init)
    await asyncio.to_thread(server.start)
    yield server
    if server.running():
        await asyncio.to_thread(server.stop)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def blackhole() -> Iterator[Callable[[int], Blackhole]]:
    """Makes TCP proxies to local ports that the test can switch to a blackhole; all closed afterwards."""
    made: list[Blackhole] = []

    def _make(upstream_port: int) -> Blackhole:
        made.append(Blackhole(upstream_port))
        return made[-1]

    yield _make
    for proxy in made:
        proxy.close()


@pytest.fixture
def silent_redis() -> Iterator[SilentListener]:
    listener = SilentListener()
    yield listener
    listener.close()


@dataclass
class Sandbox:
    aws_url: str
    cml_url: str
    instance_ids: list[str]
    env: dict[str, str]

    def ec2(self) -> Any:
        return boto3.session.Session().client(
            "ec2", region_name=REGION, endpoint_url=self.aws_url, aws_access_key_id="x", aws_secret_access_key="x"
        )

    def state(self, instance_id: str) -> str:
        answer = self.ec2().describe_instances(InstanceIds=[instance_id])
        return str(answer["Reservations"][0]["Instances"][0]["State"]["Name"])

    def sim(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, f"{self.cml_url}/_sim{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="session")
def sandbox_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The real AWS emulator and CML simulator, once per session (each test resets them)."""
    log_dir = tmp_path_factory.mktemp("sandbox")
    aws = start_moto(log_dir)
    cml = start_cml_simulator(log_dir)
    yield aws.url, cml.url
    cml.stop()
    aws.stop()


@pytest.fixture
def sandbox(sandbox_servers: tuple[str, str], stack_env: dict[str, str]) -> Sandbox:
    """A freshly seeded demo fleet, and the stack's environment pointed at it with short job intervals."""
    aws_url, cml_url = sandbox_servers
    httpx.post(f"{aws_url}/moto-api/reset").raise_for_status()
    httpx.post(f"{cml_url}/_sim/reset").raise_for_status()
    ids = seed_fleet(aws_url)
    put_metrics(aws_url, ids, 0)
    env = sandbox_env(aws_url, cml_url) | {
        "DATABASE_URL": stack_env["DATABASE_URL"],
        "AUTO_IMPORT_INTERVAL": "2",
        "WORKER_METRICS_INTERVAL": "2",
        "LABS_REFRESH_INTERVAL": "5",
        "IDLE_DETECTION_ENABLED": "false",  # tests that want it switch it on at run time
        "IDLE_TIMEOUT_MINUTES": "0.05",
        "IDLE_SNOOZE_MINUTES": "10",
        "HOUSEKEEPING_ENABLED": "false",
        "CML_TIMEOUT": "2",
    }
    stack_env.update(env)
    return Sandbox(aws_url, cml_url, ids, stack_env)
