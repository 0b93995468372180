"""SSE figures for one API process on PostgreSQL + Redis: capacity and memory, commit-to-client latency, throughput.

  python -m bench.sse_fanout [--idle 10000] [--clients 1000] [--rate 20] [--seconds 10] [--procs 4]

Starts a real `api` process pinned to CPU 0 and several client processes (bench.sse_clients, each on its own
loopback source address) on CPU 1, and commits events to the outbox from this process as the worker would:
each stamped with the time just before its commit, followed by the Redis nudge. The database is empty apart
from these events, so each connection's snapshot is small: the figures are about the stream, not the fleet.

Phases: idle clients added step by step with the API's RSS after each (memory per client is the slope) and
held past a heartbeat; latency with `--clients` at `--rate` events/s, one event per commit; sustained
throughput at offered levels of `--levels` events/s to the same clients (one event per commit, so each event
is a separate write to every client); and a burst of `--burst` events committed at once (the relay then
writes many events per client at once: the best case, for context).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from cml_cloud_manager.storage.migrate import migrate

from .common import REDIS, ScratchDatabase, cores, free_port, pin_self
from .procs import AppProcess, cpu_seconds, rss_kb
from .sse_group import ClientGroup, Emitter
from .stats import Summary

# A level is sustained when (nearly) every delivery arrived and the backlog did not run away.
SUSTAINED_SHARE = 0.999
SUSTAINED_P99_MS = 1000.0


@dataclass
class SsePlan:
    idle: int = 10_000  # capacity: idle clients held at once
    clients: int = 1000  # latency and throughput
    rate: float = 20  # events per second for the latency phase
    seconds: float = 10
    latency_runs: int = 3  # the latency phase runs this often; figures are medians over the runs
    levels: list[int] = field(default_factory=lambda: [25, 50, 100])  # events/s offered to `clients`
    burst: int = 500
    procs: int = 4  # client processes, each on its own source address
    hold: float = 16  # how long the idle clients are held (past one heartbeat at 15 s)


@dataclass
class Level:
    events_per_second: int
    expected: int
    delivered: int
    seconds: float  # first commit to last receipt
    latency: Summary
    api_cpu: float
    samples: list[float] = field(default_factory=list, repr=False)  # latencies, ms

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0

    @property
    def sustained(self) -> bool:
        return self.delivered >= SUSTAINED_SHARE * self.expected and self.latency.p99 <= SUSTAINED_P99_MS


@dataclass
class SseResult:
    plan: SsePlan
    connected: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    still_open: int = 0
    server_count: int = 0
    rss_steps: list[tuple[int, int]] = field(default_factory=list)  # (clients, API RSS in KB)
    idle_cpu: float = 0.0  # API CPU percent while holding the idle clients
    latencies: list[float] = field(default_factory=list)  # ms, the first latency run's (for the chart)
    latency_runs: list[Summary] = field(default_factory=list)
    delivered: int = 0
    expected: int = 0
    levels: list[Level] = field(default_factory=list)
    burst: Level | None = None

    @property
    def kb_per_client(self) -> float:
        """Least-squares slope of RSS over clients: one-off allocations do not count against each client."""
        if len(self.rss_steps) < 2:
            return float("nan")
        return statistics.linear_regression([c for c, _ in self.rss_steps], [r for _, r in self.rss_steps]).slope

    @property
    def sustained(self) -> Level | None:
        return max((lv for lv in self.levels if lv.sustained), key=lambda lv: lv.rate, default=None)


async def server_clients(url: str) -> int:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{url}/metrics")).text
    found = re.search(r"^sse_clients_active ([0-9.e+]+)$", text, re.M)
    return int(float(found.group(1))) if found else -1


async def capacity(api: AppProcess, plan: SsePlan, result: SseResult) -> None:
    """Idle clients added one process at a time, the API's RSS read after each step."""
    port = api.port or 0
    group = ClientGroup()
    await group.add(port, min(100, plan.idle), 1)  # warm-up: first-use allocations are not per-client memory
    await asyncio.sleep(1)
    result.rss_steps.append((group.connected, rss_kb(api.pid)))
    per_step = max(1, (plan.idle - group.connected) // plan.procs)
    while group.connected < plan.idle:
        before = group.connected
        await group.add(port, min(per_step, plan.idle - group.connected), 1)
        if group.connected == before:
            break  # nothing connects any more: report what was held rather than retry forever
        await asyncio.sleep(1)
        result.rss_steps.append((group.connected, rss_kb(api.pid)))
        print(f"    {group.connected:,} idle clients: API RSS {result.rss_steps[-1][1] / 1024:,.0f} MiB", flush=True)
    result.connected, result.failed = group.connected, group.failed
    began_cpu, began = cpu_seconds(api.pid), time.perf_counter()
    await asyncio.sleep(plan.hold)
    result.idle_cpu = 100 * (cpu_seconds(api.pid) - began_cpu) / (time.perf_counter() - began)
    result.still_open = (await group.report()).open
    result.server_count = await server_clients(api.url)
    await group.close()


async def offered(api: AppProcess, group: ClientGroup, emitter: Emitter, rate: int, seconds: float) -> Level:
    """Events at `rate` per second, one per commit, then up to 5 s for the last ones to arrive."""
    await group.report()  # start from zero
    began, began_cpu = time.time(), cpu_seconds(api.pid)
    sent = await emitter.paced(rate, seconds)
    expected, delivered, last = sent * group.connected, 0, began
    latencies: list[float] = []
    deadline = time.monotonic() + 5
    while True:
        await asyncio.sleep(0.5)
        report = await group.report()
        delivered += report.deliveries
        latencies += report.latencies
        last = max(last, report.last)
        if delivered >= expected or time.monotonic() > deadline:
            break
    cpu = 100 * (cpu_seconds(api.pid) - began_cpu) / (time.time() - began)
    samples = [x * 1000 for x in latencies]
    return Level(rate, expected, delivered, last - began, Summary.of(samples), cpu, samples)


async def burst(api: AppProcess, group: ClientGroup, emitter: Emitter, events: int) -> Level:
    await group.report()
    began, began_cpu = time.time(), cpu_seconds(api.pid)
    await emitter.emit(events, per_commit=50)
    expected, delivered, last = events * group.connected, 0, began
    deadline = time.monotonic() + 60
    while delivered < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        report = await group.report()
        delivered += report.deliveries
        last = max(last, report.last)
    cpu = 100 * (cpu_seconds(api.pid) - began_cpu) / (time.time() - began)
    return Level(0, expected, delivered, last - began, Summary.of([]), cpu)


async def streams(api: AppProcess, emitter: Emitter, plan: SsePlan, result: SseResult) -> None:
    group = ClientGroup()
    await group.add(api.port or 0, plan.clients, plan.procs)
    await asyncio.sleep(1)
    for run in range(plan.latency_runs):
        latency = await offered(api, group, emitter, int(plan.rate), plan.seconds)
        print(f"    latency run {run + 1}: {latency.latency.text()}", flush=True)
        if run == 0:
            result.latencies = latency.samples  # kept once, for the chart
            result.levels.append(latency)
        latency.samples = []
        result.latency_runs.append(latency.latency)
        result.delivered += latency.delivered
        result.expected += latency.expected
    for rate in plan.levels:
        level = await offered(api, group, emitter, rate, plan.seconds)
        print(
            f"    {rate} events/s x {group.connected:,} clients: {level.rate:,.0f} deliveries/s, "
            f"{level.delivered:,} of {level.expected:,}, latency {level.latency.text()}, "
            f"API CPU {level.api_cpu:.0f}%",
            flush=True,
        )
        level.samples = []
        result.levels.append(level)
        if not level.sustained:
            break  # higher levels would only pile up a longer backlog
    await group.command("latencies off", answer=False)
    result.burst = await burst(api, group, emitter, plan.burst)
    await group.close()


async def run_sse(plan: SsePlan, log_dir: Path | None = None) -> SseResult:
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="bench-sse-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    pin_self({1})  # clients and emitter share CPU 1; the API gets CPU 0 to itself
    db = await ScratchDatabase.create("bench_sse")
    result = SseResult(plan)
    api: AppProcess | None = None
    emitter = Emitter(db.url, db.name)
    try:
        await migrate(emitter.db)
        port = free_port()
        env = {
            "DATABASE_URL": db.url,
            "REDIS_URL": REDIS,
            "REDIS_PREFIX": db.name,
            "APP_PORT": str(port),
            "SSE_CLIENT_QUEUE_SIZE": "100000",
        }  # the burst must not count as "too slow"
        api = AppProcess.start("api", ["api"], env, log_dir, cpu=0, port=port)
        await asyncio.to_thread(api.wait_healthy)
        print(f"  capacity: {plan.idle:,} idle clients, held {plan.hold:.0f}s", flush=True)
        await capacity(api, plan, result)
        print(
            f"  streams: {plan.clients:,} clients, {plan.rate:g} events/s, then {plan.levels} events/s, "
            f"{plan.seconds:.0f}s each; a burst of {plan.burst:,} events",
            flush=True,
        )
        await streams(api, emitter, plan, result)
    finally:
        if api is not None:
            api.stop()
        await emitter.aclose()
        await db.drop()
        pin_self(None)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = SsePlan()
    for name in ("idle", "clients", "burst", "procs", "latency_runs"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    for name in ("rate", "seconds", "hold"):
        parser.add_argument(f"--{name}", type=float, default=getattr(defaults, name))
    parser.add_argument("--levels", type=int, nargs="+", default=defaults.levels, help="events/s offered")
    args = parser.parse_args()
    result = asyncio.run(run_sse(SsePlan(**vars(args))))
    print(f"machine: {cores()} cores")
    print(
        f"capacity: {result.still_open:,} of {args.idle:,} idle clients open after {args.hold:.0f}s "
        f"(server counts {result.server_count:,}); {result.kb_per_client:.1f} KB per client"
    )
    runs = result.latency_runs
    print(
        f"latency, {args.clients} clients at {args.rate:g} events/s, median of {len(runs)} runs: "
        f"p50 {statistics.median(r.p50 for r in runs):.2f} ms, p99 {statistics.median(r.p99 for r in runs):.2f} ms "
        f"({result.delivered:,} of {result.expected:,} deliveries)"
    )
    best = result.sustained
    print(
        f"sustained: {best.rate:,.0f} deliveries/s at {best.events_per_second} events/s"
        if best
        else "sustained: no level was sustained"
    )
    if result.burst:
        print(
            f"burst: {result.burst.delivered:,} deliveries in {result.burst.seconds:.2f}s = "
            f"{result.burst.rate:,.0f} deliveries/s"
        )


if __name__ == "__main__":
    main()
