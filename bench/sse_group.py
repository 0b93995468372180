"""The SSE benchmark's two sides outside the API: client processes, and the emitter that plays the worker."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from cml_cloud_manager.config import load_settings
from cml_cloud_manager.events import outbox
from cml_cloud_manager.events.data import EventData
from cml_cloud_manager.events.notifier import Notifier
from cml_cloud_manager.storage.db import Database

from .common import REDIS

ROOT = Path(__file__).resolve().parents[1]


class Tick(EventData):
    """The benchmark's own event: when it was committed, for the clients to measure its latency by."""

    types: ClassVar[tuple[str, ...]] = ("bench.tick",)

    bench_t: float


@dataclass
class Report:
    deliveries: int
    latencies: list[float]  # seconds
    last: float  # wall time of the last delivery, 0 if none
    open: int  # connections still open


class ClientGroup:
    """Several client processes, spread over source addresses 127.0.0.11, .12, ..."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []
        self.connected = 0
        self.failed: dict[str, int] = {}

    async def add(self, port: int, n: int, procs: int) -> None:
        started = []
        for index in range(procs):
            count = n // procs + (1 if index < n % procs else 0)
            bind = f"127.0.0.{11 + len(self.procs) + index}"
            started.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bench.sse_clients",
                    "127.0.0.1",
                    str(port),
                    str(count),
                    "--bind",
                    bind,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    cwd=ROOT,
                    limit=1 << 26,
                )
            )
        for proc in started:
            assert proc.stdout is not None
            hello = json.loads(await proc.stdout.readline())
            self.connected += hello["connected"]
            for name, count in hello["failed"].items():
                self.failed[name] = self.failed.get(name, 0) + count
        self.procs += started

    async def command(self, text: str, answer: bool = True) -> list[dict[str, Any]]:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(text.encode() + b"\n")
            await proc.stdin.drain()
        if not answer:
            return []
        return [json.loads(await proc.stdout.readline()) for proc in self.procs if proc.stdout is not None]

    async def report(self) -> Report:
        """Everything the clients saw since the last report, summed over the processes."""
        parts = await self.command("report")
        return Report(
            deliveries=sum(int(p["deliveries"]) for p in parts),
            latencies=[float(x) for p in parts for x in p["latencies"]],
            last=max((float(p["last"]) for p in parts), default=0.0),
            open=sum(int(p["open"]) for p in parts),
        )

    async def close(self) -> None:
        await self.command("quit", answer=False)
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        self.procs = []


class Emitter:
    """Commits stamped events to the outbox, then nudges the API through Redis, as the worker does."""

    def __init__(self, url: str, prefix: str) -> None:
        self.db = Database(load_settings(database_url=url, redis_url=REDIS))
        self.notifier = Notifier(REDIS, prefix)
        self.db.on_commit = self._nudge

    async def _nudge(self, info: dict[str, Any]) -> None:
        self.notifier.nudge(self.notifier.channel)

    async def emit(self, count: int, per_commit: int = 1) -> None:
        for start in range(0, count, per_commit):
            async with self.db.session() as session:
                for _ in range(min(per_commit, count - start)):
                    await outbox.append(session, Tick(bench_t=time.time()))

    async def paced(self, rate: float, seconds: float) -> int:
        sent, began = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - began) < seconds:
            if sent < int(elapsed * rate) + 1:
                await self.emit(1)
                sent += 1
            else:
                await asyncio.sleep(max(0.0, sent / rate - elapsed))
        return sent

    async def aclose(self) -> None:
        await self.notifier.aclose()
        await self.db.dispose()
