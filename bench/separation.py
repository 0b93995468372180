"""Separation pays: API latency under a fixed read load, combined (`all`) vs split (`api` + `worker`) processes.

For each mode: start the processes on a database holding 1,000 imported workers, then run phases of open-loop
load (bench.loadgen, a separate process) at each rate, first with worker-metrics switched off (idle), then on
(every 10 s over the 1,000 simulated workers), and that `rounds` times. The API (or combined) process is pinned
to CPU 0; everything else we start (worker, load generator, emulator, simulator) to CPU 1, and every process
already running (the machine's PostgreSQL, Redis and other services) is moved there too for the section, as
separate containers or machines would keep them off the API's CPU.
The worker runs with the CPU weight its deployment units give it (WORKER_SHARES). The emulator and the simulator
stand in for remote AWS and CML hosts: they are background processes on CPU 1 (an idle `procs.CpuGroup`), so they
only use CPU that nothing measured wants.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx

from .common import REDIS, ScratchDatabase, free_port, pin_self
from .fleet import Fleet, prepare_database
from .procs import AppProcess, CpuGroup, CpuSampler, everything_on
from .stats import Summary

ROOT = Path(__file__).resolve().parents[1]
JOB = "worker-metrics"
INTERVAL = 10
# The worker's CPU weight where it shares a host: `CPUWeight=20` in deploy/systemd/cml-worker.service (systemd
# writes 20 * 1024 / 100 to cpu.shares) and `cpu_shares: 204` in docker-compose.yml. Its runs have seconds to
# spare; PostgreSQL's answers to the API do not.
WORKER_SHARES = 204
OTHER_JOBS_OFF = {
    f"{name}_ENABLED": "false" for name in ("LABS_REFRESH", "AUTO_IMPORT", "IDLE_DETECTION", "HOUSEKEEPING")
}


@dataclass
class Plan:
    rates: list[int]
    seconds: float  # measured per phase
    warmup: float = 3.0  # sent but not counted: connections and caches settle
    list_every: int = 10  # one request in ten lists 100 workers, the rest fetch one worker
    modes: tuple[str, ...] = ("all", "split")
    workers: int = 1000
    rounds: int = 3  # each mode's idle and jobs phases run this often; figures are medians over the rounds


@dataclass
class Phase:
    mode: str
    rate: int
    jobs: bool
    start: float  # wall time of the first measured request's due time
    seconds: float
    # (due offset from start, latency ms, HTTP status or 0, kind 0=list 1=get, generator lag ms)
    records: list[tuple[float, float, int, int, float]]
    peak_connections: int
    cpu: dict[str, float]  # mean percent of one core per process group over the phase
    runs: list[tuple[float, float, str]] = field(default_factory=list)  # job runs: start/end offsets, outcome
    round: int = 1

    @property
    def label(self) -> str:
        return f"{self.mode}, {self.rate} req/s, {'jobs' if self.jobs else 'idle'}, round {self.round}"

    def summary(self, kind: int | None = None) -> Summary:
        ok = [r[1] for r in self.records if r[2] == 200 and (kind is None or r[3] == kind)]
        errors = sum(1 for r in self.records if r[2] != 200 and (kind is None or r[3] == kind))
        return Summary.of(ok, errors)

    def lag(self) -> Summary:
        return Summary.of([max(0.0, r[4]) for r in self.records])


@dataclass
class SeparationResult:
    plan: Plan
    phases: list[Phase]
    cpu_samples: dict[str, list[tuple[float, dict[str, float]]]]  # per mode
    refused: list[str] = field(default_factory=list)  # CPU groups that could not be made: what was done instead

    def phase(self, mode: str, rate: int, jobs: bool) -> Phase | None:
        """The first round's phase (the one the latency chart draws)."""
        return next(iter(self.rounds(mode, rate, jobs)), None)

    def rounds(self, mode: str, rate: int, jobs: bool) -> list[Phase]:
        return [p for p in self.phases if (p.mode, p.rate, p.jobs) == (mode, rate, jobs)]


def front_name(mode: str) -> str:
    """The process that serves HTTP in `mode`."""
    return "all" if mode == "all" else "api"


class System:
    """The measured processes of one mode and the admin calls the benchmark makes to them."""

    def __init__(self, mode: str, env: dict[str, str], log_dir: Path, worker_group: CpuGroup) -> None:
        port = free_port()
        env = {**env, "APP_PORT": str(port)}
        self.procs: dict[str, AppProcess] = {}
        # The API (or combined) process gets CPU 0 to itself; the worker inherits our CPU 1, with the CPU weight
        # its deployment gives it (WORKER_SHARES).
        front = front_name(mode)
        self.api = self.procs[front] = AppProcess.start(front, [front], env, log_dir, cpu=0, port=port)
        if mode == "split":
            self.procs["worker"] = AppProcess.start("worker", ["worker"], env, log_dir)
            worker_group.add(self.procs["worker"].pid)
        self.api.wait_healthy()
        self.http = httpx.Client(base_url=self.api.url, timeout=30)

    def set_job(self, enabled: bool | None) -> None:
        """Switch worker-metrics at run time (None removes the override); the scheduler sees it within 1 s."""
        answer = self.http.put("/api/system/settings", json={"values": {f"jobs.{JOB}.enabled": enabled}})
        answer.raise_for_status()

    def runs(self) -> list[dict[str, object]]:
        answer = self.http.get(f"/api/system/jobs/{JOB}/runs", params={"limit": 500})
        answer.raise_for_status()
        return [run for run in answer.json() if run]

    def wait_for_run(self, after: float, timeout: float = 3 * INTERVAL) -> None:
        """Until a run started after `after` (wall time): the next tick has been picked up."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(_wall(run["started_at"]) >= after for run in self.runs()):
                return
            time.sleep(0.5)
        raise RuntimeError(f"{JOB} did not start within {timeout:.0f}s; see the logs of {list(self.procs)}")

    def wait_idle(self, timeout: float = 3 * INTERVAL) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline and any(run["finished_at"] is None for run in self.runs()[:3]):
            time.sleep(0.5)

    def stop(self) -> None:
        self.http.close()
        for proc in self.procs.values():
            proc.stop()


def _wall(value: object) -> float:
    return datetime.fromisoformat(str(value)).timestamp()


def load(system: System, plan: Plan, rate: int, ids_file: Path, out: Path, sampler: CpuSampler) -> dict[str, object]:
    """One open-loop phase from a fresh generator process; its CPU joins the sampler while it runs."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--url",
            system.api.url,
            "--rate",
            str(rate),
            "--seconds",
            str(plan.warmup + plan.seconds),
            "--ids",
            str(ids_file),
            "--list-every",
            str(plan.list_every),
            "--out",
            str(out),
        ],
        cwd=ROOT,
    )
    sampler.groups["loadgen"] = [proc.pid]
    if proc.wait() != 0:
        raise RuntimeError(f"load generator failed with {proc.returncode}")
    sampler.groups["loadgen"] = []
    result: dict[str, object] = json.loads(out.read_text())
    return result


def phase_from(
    mode: str,
    rate: int,
    jobs: bool,
    plan: Plan,
    raw: dict[str, object],
    sampler: CpuSampler,
    runs: list[dict[str, object]],
    round_number: int,
) -> Phase:
    start = float(raw["t0_wall"]) + plan.warmup  # type: ignore[arg-type]
    records = [
        (due - plan.warmup, latency * 1000, status, kind, lag * 1000)
        for due, latency, status, kind, lag in raw["records"]  # type: ignore[attr-defined]
        if due >= plan.warmup
    ]
    end = start + plan.seconds
    spans = []
    for run in runs:
        began = _wall(run["started_at"])
        finished = _wall(run["finished_at"]) if run["finished_at"] else end
        if began < end and finished > start:
            spans.append((began - start, finished - start, str(run["outcome"])))
    return Phase(
        mode,
        rate,
        jobs,
        start,
        plan.seconds,
        records,
        int(raw["peak_connections"]),  # type: ignore[call-overload]
        sampler.between(start, end),
        sorted(spans),
        round_number,
    )


def run_mode(
    mode: str, plan: Plan, env: dict[str, str], fleet: Fleet, ids_file: Path, log_dir: Path, worker_group: CpuGroup
) -> tuple[list[Phase], list[tuple[float, dict[str, float]]]]:
    system = System(mode, env, log_dir, worker_group)
    groups: dict[str, list[int] | str] = {name: [proc.pid] for name, proc in system.procs.items()}
    groups |= {name: [pid] for name, pid in fleet.pids.items()}
    groups |= {"postgres": "postgres", "loadgen": []}
    sampler = CpuSampler(groups, waits=(front_name(mode),)).start()
    phases = []
    try:
        time.sleep(2)  # let the worker register and the first heartbeats settle
        for number in range(1, plan.rounds + 1):
            for jobs in (False, True):
                if jobs:
                    switched = time.time()
                    system.set_job(True)
                    system.wait_for_run(switched)
                for rate in plan.rates:
                    label = f"{mode}, {rate} req/s, {'jobs every 10 s' if jobs else 'idle'}, round {number}"
                    print(f"  {label}: {plan.seconds:.0f}s of load", flush=True)
                    out = log_dir / f"load-{mode}-{rate}-{jobs}-{number}.json"
                    raw = load(system, plan, rate, ids_file, out, sampler)
                    phase = phase_from(mode, rate, jobs, plan, raw, sampler, system.runs() if jobs else [], number)
                    print(
                        f"    {phase.summary().text()}, errors {phase.summary().errors}, "
                        f"generator lag p99 {phase.lag().p99:.2f} ms",
                        flush=True,
                    )
                    phases.append(phase)
                    time.sleep(1)  # a backlog from an overloaded phase must not leak into the next
            # The next round's idle phases start once the last run has ended.
            system.set_job(False if number < plan.rounds else None)
            system.wait_idle()
    finally:
        samples = sampler.stop()
        system.stop()
    return phases, samples


def run_separation(plan: Plan, log_dir: Path | None = None) -> SeparationResult:
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="bench-separation-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    pin_self({1})  # everything started from here on shares CPU 1; the API gets CPU 0 by taskset
    db = asyncio.run(ScratchDatabase.create("bench_sep"))
    try:
        with (
            everything_on({1}) as unpinned,
            Fleet(log_dir) as fleet,
            CpuGroup("cml-bench-background", idle=True, fallback_nice=10) as background,
            CpuGroup("cml-bench-worker", shares=WORKER_SHARES) as worker_group,
        ):
            for name in unpinned:
                print(f"  could not move {name} off the API's core", flush=True)
            refused = [group.refused for group in (background, worker_group) if group.refused]
            for reason in refused:
                print(f"  {reason}", flush=True)
            for pid in fleet.pids.values():
                # Remote hosts in production: on CPU 1 in the idle class, they take no CPU the measured processes
                # want. Let onto CPU 0 as well, they took the API's caches: split-mode p99 with jobs 4 to 9 ms, not ~3.
                background.add(pid)
            began = time.perf_counter()
            fleet.grow(plan.workers)
            imported = asyncio.run(prepare_database(fleet, db.url))
            print(f"  fleet: {imported} workers imported in {time.perf_counter() - began:.0f}s", flush=True)
            ids = [row["id"] for row in asyncio.run(db.fetch("SELECT id FROM workers ORDER BY id"))]
            ids_file = log_dir / "worker-ids.txt"
            ids_file.write_text("\n".join(ids))
            env = {
                **fleet.app_env(),
                **OTHER_JOBS_OFF,
                "DATABASE_URL": db.url,
                "REDIS_URL": REDIS,
                "REDIS_PREFIX": db.name,
                "WORKER_METRICS_INTERVAL": str(INTERVAL),
                "WORKER_METRICS_ENABLED": "false",
            }
            phases: list[Phase] = []
            samples = {}
            for mode in plan.modes:
                mode_phases, samples[mode] = run_mode(mode, plan, env, fleet, ids_file, log_dir, worker_group)
                phases += mode_phases
    finally:
        pin_self(None)
        asyncio.run(db.drop())
    return SeparationResult(plan, phases, samples, refused)
