"""SSE figures for one API process on PostgreSQL + Redis: commit-to-client latency, relay throughput, memory.

  python -m bench.sse_fanout [--clients 100] [--rate 20] [--seconds 10] [--idle 1000]

Starts a real `api` process, a separate load-generator process holding the SSE clients, and commits events to
the outbox from this process (as the worker would), each stamped with its commit time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid

import asyncpg
import httpx

from cml_cloud_manager.config import load_settings
from cml_cloud_manager.events import outbox
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.migrate import migrate

PG = "postgresql://postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/0"


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Clients:
    def __init__(self, port: int, n: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.sse_clients", "127.0.0.1", str(port), str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        json.loads(self.proc.stdout.readline())  # {"connected": n}

    def report(self) -> dict[str, list[float]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"report\n")
        self.proc.stdin.flush()
        result: dict[str, list[float]] = json.loads(self.proc.stdout.readline())
        return result

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


async def emit(db: Database, count: int, per_commit: int = 1) -> None:
    for _ in range(0, count, per_commit):
        async with db.session() as session:
            for _ in range(per_commit):
                await outbox.append(session, "bench.tick", {"bench_t": time.time()})


async def paced(db: Database, rate: float, seconds: float) -> int:
    sent, began = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - began) < seconds:
        due = int(elapsed * rate) + 1
        if sent < due:
            await emit(db, 1)
            sent += 1
        else:
            await asyncio.sleep(max(0.0, sent / rate - elapsed))
    return sent


async def run(args: argparse.Namespace) -> None:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"{PG}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    db = Database(load_settings(database_url=url, redis_url=REDIS))
    await migrate(db)
    port = 18000 + os.getpid() % 1000
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": REDIS, "APP_PORT": str(port), "ACCESS_LOG": "false",
           "REDIS_PREFIX": name, "LOG_LEVEL": "WARNING", "SSE_CLIENT_QUEUE_SIZE": "100000"}
    api = subprocess.Popen([sys.executable, "-m", "cml_cloud_manager", "api"], env=env)
    from cml_cloud_manager.events.notifier import Notifier

    notifier = Notifier(REDIS, name)
    db.on_commit = lambda info: notifier.publish(notifier.channel)
    try:
        async with httpx.AsyncClient() as http:
            while True:
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/api/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        base_rss = rss_kb(api.pid)
        print(f"API RSS before clients: {base_rss / 1024:.1f} MiB", flush=True)

        clients = Clients(port, args.clients)
        await asyncio.sleep(1)
        sent = await paced(db, args.rate, args.seconds)
        await asyncio.sleep(1)
        report = clients.report()
        lat = [v * 1000 for v in report["latencies"]]
        got = sum(report["counts"])
        print(
            f"latency, {args.clients} clients at {args.rate} events/s for {args.seconds:.0f}s: "
            f"p50 {statistics.median(lat):.1f} ms, p99 {percentile(lat, 0.99):.1f} ms, max {max(lat):.1f} ms "
            f"({got} of {sent * args.clients} deliveries)",
            flush=True,
        )

        burst = args.burst
        began = time.perf_counter()
        await emit(db, burst, per_commit=50)
        expected = burst * args.clients
        while True:
            await asyncio.sleep(0.2)
            report = clients.report()
            got = sum(report["counts"])
            expected -= got
            if expected <= 0:
                break
        took = time.perf_counter() - began
        print(
            f"throughput: {burst} events to {args.clients} clients in {took:.2f}s = {burst / took:,.0f} events/s, "
            f"{burst * args.clients / took:,.0f} deliveries/s",
            flush=True,
        )
        clients.close()

        await asyncio.sleep(1)
        before = rss_kb(api.pid)
        idle = Clients(port, args.idle)
        await asyncio.sleep(2)
        after = rss_kb(api.pid)
        print(
            f"memory: {args.idle} idle SSE clients add {(after - before) / 1024:.1f} MiB = "
            f"{(after - before) / args.idle:.1f} KB per client",
            flush=True,
        )
        idle.close()
    finally:
        api.terminate()
        api.wait()
        await notifier.aclose()
        await db.dispose()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--burst", type=int, default=5000)
    parser.add_argument("--idle", type=int, default=1000)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores", flush=True)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
