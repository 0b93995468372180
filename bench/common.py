"""Small pieces every benchmark shares: scratch databases, limits, percentiles, CPU pinning."""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]

T = TypeVar("T")

PG = "postgresql://postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/0"
# Enough descriptors for 10,000+ sockets in one process. Only a process with CAP_SYS_RESOURCE may raise the
# hard limit (containers often lack it), so the soft limit goes as far as the hard one allows.
NOFILE = 65536


def run_fast(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop, the loop uvicorn uses, when installed: load generators must be cheaper than the server."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def cores() -> int:
    return os.cpu_count() or 1


def loopback_round_trip(client_cpu: int, server_cpu: int, rounds: int = 3000) -> float:
    """Median microseconds for a 1-byte TCP ping-pong on loopback between threads pinned to two CPUs.

    Calibrates the machine: on some virtual machines waking a thread on the other core costs ~100 us, so
    every request, database round trip and SSE write between pinned processes pays it."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    main_cpus = os.sched_getaffinity(0)

    def echo() -> None:
        os.sched_setaffinity(0, {server_cpu})  # 0 = the calling thread
        conn, _ = listener.accept()
        with conn:
            while data := conn.recv(64):
                conn.sendall(data)

    server = threading.Thread(target=echo, daemon=True)
    server.start()
    os.sched_setaffinity(0, {client_cpu})
    try:
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            times = []
            for _ in range(rounds):
                began = time.perf_counter()
                conn.sendall(b"x")
                conn.recv(64)
                times.append(time.perf_counter() - began)
    finally:
        os.sched_setaffinity(0, main_cpus)
        listener.close()
    server.join(5)
    return statistics.median(times) * 1e6


def raise_nofile(limit: int = NOFILE) -> int:
    """Raise this process's open-file limit as far as allowed; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for wanted in ((limit, max(limit, hard)), (min(limit, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, wanted)
            return wanted[0]
        except (ValueError, OSError):
            continue
    return soft


def pin_self(cpus: set[int] | None) -> None:
    """Pin this process (and so every child it starts from now on) to `cpus`; None undoes the pinning."""
    os.sched_setaffinity(0, cpus if cpus is not None else set(range(cores())))


def taskset_prefix(cpu: int | None) -> list[str]:
    """`taskset -c N` for a child command; pinning is skipped (and said so) on a one-core machine."""
    if cpu is None or cores() < 2:
        return []
    if shutil.which("taskset") is None:
        raise RuntimeError("taskset not found: install util-linux (apt-get install util-linux)")
    return ["taskset", "-c", str(cpu)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1); NaN for no values, so an empty phase shows as such."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


@dataclass
class ScratchDatabase:
    """A PostgreSQL database of its own per benchmark, dropped afterwards."""

    name: str

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.name}"

    @classmethod
    async def create(cls, prefix: str = "bench") -> ScratchDatabase:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(f"{PG}/postgres")
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return cls(name)

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(f"{PG}/{self.name}")
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    async def execute(self, query: str, *args: object) -> None:
        conn = await asyncpg.connect(f"{PG}/{self.name}")
        try:
            await conn.execute(query, *args)
        finally:
            await conn.close()

    async def drop(self) -> None:
        admin = await asyncpg.connect(f"{PG}/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            await admin.close()
