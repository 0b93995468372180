"""One CML simulator served over loopback HTTP for the whole session; each test takes its own host key."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from cml_cloud_manager.cml import CMLClient
from cml_cloud_manager.cml.simulator import RunningSimulator, Simulator, serve_in_thread

USERNAME = "admin"
PASSWORD = "sim-admin-secret"


@pytest.fixture(scope="session")
def served() -> Iterator[RunningSimulator]:
    with serve_in_thread(Simulator(username=USERNAME, password=PASSWORD)) as running:
        # uvicorn reports "started" once listening; also see the app answer before any test relies on it.
        deadline = time.monotonic() + 10
        while httpx.get(f"{running.root_url}/_sim/health", timeout=1.0).status_code != 200:
            assert time.monotonic() < deadline, "simulator health endpoint never answered"
            time.sleep(0.005)
        yield running


@pytest.fixture
def sim(served: RunningSimulator) -> Simulator:
    return served.sim


@pytest.fixture
def host_key() -> str:
    """A host nobody else touched: tests share one simulator but never one host."""
    return f"t-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def base_url(served: RunningSimulator, host_key: str) -> str:
    return served.base_url(host_key)


@pytest.fixture
async def cml(base_url: str, sim: Simulator) -> AsyncIterator[CMLClient]:
    async with CMLClient(base_url, sim.username, sim.password, timeout=5.0) as client:
        yield client


@pytest.fixture
def dead_url() -> str:
    """A loopback URL with nothing listening behind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    return f"http://127.0.0.1:{port}/hosts/gone"
