"""Separation pays, measured on the product as shipped: API latency under a fixed read load, with the jobs
running and switched off, split (`api` + `worker`) and combined (`all`), in two scenarios side by side.

Settings are the product's defaults throughout: token auth (the load carries a viewer token), the access log,
INFO logs, all five jobs at their default intervals (auto-import switched on, as the sandbox does), plus
worker-metrics every 10 s over 1,000 imported workers, on PostgreSQL. The load generator (bench.loadgen, a
process of its own session) runs at normal priority.

(a) shared box: nothing moved. Split mode is `cml-cloud-manager up`, combined `cml-cloud-manager all`, each
    started as from a terminal of its own (its own session), as `make run` starts `up`; no Redis (`make run`
    has none). Every process, the machine's own (PostgreSQL) and the AWS emulator and CML simulator included,
    runs where the kernel puts it, at normal priority.
(b) dedicated API core: the production layout. The API (or combined) process has CPU 0 to itself; everything
    else shares CPU 1: the machine's processes are moved there for the section (PostgreSQL and Redis as
    separate hosts would keep them off the API's core), the worker runs as its own service with the CPU weight
    its units give it, and the emulator and simulator (remote hosts in production) in an idle CPU class.

For each scenario and mode the processes start, the jobs' first runs (every job runs its current tick at
start) end, and then `rounds` times: a phase with the jobs on, then one with all five off (switched at run time
through `PUT /api/system/settings`, as an admin would).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from cml_cloud_manager.auth import tokens
from cml_cloud_manager.auth.roles import Role
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.system.schemas import JOB_NAMES

from .common import REDIS, ScratchDatabase, free_port, pin_self
from .fleet import Fleet, prepare_database
from .procs import AppProcess, CpuGroup, CpuSampler, busiest_others, children, cpu_table, everything_on, niceness
from .stats import Summary

ROOT = Path(__file__).resolve().parents[1]
JOB = "worker-metrics"
INTERVAL = 10
# Scenario (b): the worker's CPU weight as a service of its own: `CPUWeight=20` in deploy/systemd/cml-worker.service
# (systemd writes 20 * 1024 / 100 to cpu.shares) and `cpu_shares: 204` in docker-compose.yml.
WORKER_SHARES = 204
SETTINGS = (
    "defaults: token auth, access log on, all five jobs at their default intervals (auto-import on), "
    f"worker-metrics every {INTERVAL} s, 1,000 workers, PostgreSQL"
)


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    dedicated: bool  # API on CPU 0 alone, the rest on CPU 1, stand-ins idle, worker weighted
    redis: bool
    layout: str  # how the processes were placed, for the report

    def label(self, extra_env: dict[str, str]) -> str:
        """The scenario and settings a row was measured with."""
        changed = "".join(f", {name}={value}" for name, value in sorted(extra_env.items()))
        return f"{self.title}; defaults{', Redis' if self.redis else ''}{changed}"


SCENARIOS = {
    "a": Scenario(
        "a",
        "(a) shared box",
        dedicated=False,
        redis=False,
        layout="`up` (split) or `all` in a session of its own, as `make run` starts it; nothing pinned or moved; "
        "the emulator, the simulator and the load generator at normal priority; no Redis",
    ),
    "b": Scenario(
        "b",
        "(b) dedicated API core",
        dedicated=True,
        redis=True,
        layout="the API (or `all`) alone on CPU 0; worker, PostgreSQL, Redis, load generator and the machine's other "
        f"processes on CPU 1; the worker a service of its own with CPU weight {WORKER_SHARES}; the emulator and "
        "simulator in an idle CPU class; Redis",
    ),
}
MODES = ("split", "all")


@dataclass
class Plan:
    rates: list[int] = field(default_factory=lambda: [500])
    seconds: float = 30.0  # measured per phase
    warmup: float = 3.0  # sent but not counted: connections and caches settle
    list_every: int = 10  # one request in ten lists 100 workers, the rest fetch one worker
    modes: tuple[str, ...] = MODES
    scenarios: tuple[str, ...] = ("a", "b")
    workers: int = 1000
    rounds: int = 3  # each mode's jobs-on and jobs-off phases run this often; figures are medians over the rounds
    extra_env: dict[str, str] = field(default_factory=dict)  # on top of the defaults, named in every row
    settle_timeout: float = 300.0  # for the jobs' first runs after start (labs-refresh over 1,000 workers)


@dataclass
class JobRun:
    job: str
    start: float  # offsets from the phase's start, seconds
    end: float | None  # None: still running when read
    outcome: str
    seconds: dict[str, float] = field(default_factory=dict)  # worker-metrics' own split: observe, store

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start

    @property
    def split(self) -> str:
        """' (observe 3.1 s, store 0.4 s)' when the run said where its time went."""
        return f" ({', '.join(f'{k} {v:.1f} s' for k, v in self.seconds.items())})" if self.seconds else ""


@dataclass
class Phase:
    scenario: str
    mode: str
    rate: int
    jobs: bool
    start: float  # wall time of the first measured request's due time
    seconds: float
    # (due offset from start, latency ms, HTTP status or 0, kind 0=list 1=get, generator lag ms)
    records: list[tuple[float, float, int, int, float]]
    peak_connections: int
    cpu: dict[str, float]  # mean percent of one core per process group over the phase
    runs: list[JobRun] = field(default_factory=list)  # every job's runs overlapping the phase
    round: int = 1
    others: list[tuple[str, float]] = field(default_factory=list)  # busiest processes we did not start

    @property
    def label(self) -> str:
        jobs = "on" if self.jobs else "off"
        return f"({self.scenario}) {self.mode}, {self.rate} req/s, jobs {jobs}, round {self.round}"

    def summary(self, kind: int | None = None) -> Summary:
        ok = [r[1] for r in self.records if r[2] == 200 and (kind is None or r[3] == kind)]
        errors = sum(1 for r in self.records if r[2] != 200 and (kind is None or r[3] == kind))
        return Summary.of(ok, errors)

    def lag(self) -> Summary:
        return Summary.of([max(0.0, r[4]) for r in self.records])

    def api_ms_per_request(self) -> float | None:
        """The serving process's CPU over the phase divided by the requests it answered, in ms."""
        front = self.cpu.get("api", self.cpu.get("all"))
        answered = len(self.records) / self.seconds
        return front * 10 / answered if front and answered else None

    def metrics_runs(self) -> list[JobRun]:
        """The worker-metrics runs that started and ended inside the phase (a timed-out one ends at its timeout)."""
        return [
            run
            for run in self.runs
            if run.job == JOB and run.start >= 0 and run.end is not None and run.end <= self.seconds
        ]


@dataclass
class SeparationResult:
    plan: Plan
    phases: list[Phase]
    cpu_samples: dict[str, list[tuple[float, dict[str, float]]]]  # per "<scenario> <mode>"
    notes: list[str] = field(default_factory=list)  # what could not be done as planned, for the report

    def rounds(self, scenario: str, mode: str, rate: int, jobs: bool) -> list[Phase]:
        return [p for p in self.phases if (p.scenario, p.mode, p.rate, p.jobs) == (scenario, mode, rate, jobs)]

    def phase(self, scenario: str, mode: str, rate: int, jobs: bool) -> Phase | None:
        """The first round's phase (the one the latency chart draws)."""
        return next(iter(self.rounds(scenario, mode, rate, jobs)), None)


class System:
    """The measured processes of one scenario and mode, and the admin calls the benchmark makes to them."""

    def __init__(
        self,
        scenario: Scenario,
        mode: str,
        env: dict[str, str],
        log_dir: Path,
        admin_token: str,
        worker_group: CpuGroup | None,
    ) -> None:
        port = free_port()
        env = {**env, "APP_PORT": str(port)}
        self.procs: dict[str, AppProcess] = {}
        self.pids: dict[str, int] = {}
        name = f"{scenario.key}-{mode}"
        if scenario.dedicated:
            front = "api" if mode == "split" else "all"
            self.front = AppProcess.start(f"{name}-{front}", [front], env, log_dir, cpu=0, port=port, quiet=False)
            self.procs[front] = self.front
            if mode == "split":
                worker = AppProcess.start(f"{name}-worker", ["worker"], env, log_dir, quiet=False)
                self.procs["worker"] = worker
                if worker_group is not None:
                    worker_group.add(worker.pid)
        else:
            command = "up" if mode == "split" else "all"
            self.front = AppProcess.start(name, [command], env, log_dir, port=port, quiet=False, own_session=True)
            self.procs[command] = self.front
        self.pids = {role: proc.pid for role, proc in self.procs.items()}
        try:
            self.front.wait_healthy()
            if "up" in self.procs:
                self.pids |= self._children_of_up()
        except BaseException:
            self.stop()
            raise
        admin = {"Authorization": f"Bearer {admin_token}"}
        self.http = httpx.Client(base_url=self.front.url, timeout=30, headers=admin)

    def _children_of_up(self, timeout: float = 30) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = {args[-1]: pid for pid, args in children(self.front.pid).items() if args[-1] in ("api", "worker")}
            if len(found) == 2:
                return found
            time.sleep(0.2)
        raise RuntimeError(f"`up` did not start api and worker within {timeout:.0f}s; see {self.front.log}")

    @property
    def url(self) -> str:
        return self.front.url

    def set_jobs(self, enabled: bool | None) -> None:
        """Switch all five jobs at run time (None removes the overrides: back to the settings' defaults)."""
        values = {f"jobs.{name}.enabled": enabled for name in JOB_NAMES}
        self.http.put("/api/system/settings", json={"values": values}).raise_for_status()

    def stop(self) -> None:
        if hasattr(self, "http"):
            self.http.close()
        for proc in self.procs.values():
            proc.stop()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


RunRow = tuple[str, float, float | None, str, dict[str, float]]


def job_runs(db: ScratchDatabase, since: float) -> list[RunRow]:
    """(job, started, finished or None, outcome, the run's `seconds` split if it reports one) of every run that was
    going at or after `since` (wall time)."""
    rows = asyncio.run(
        db.fetch(
            "SELECT job_name, started_at, finished_at, outcome, summary FROM job_runs "
            "WHERE finished_at IS NULL OR finished_at >= $1 ORDER BY started_at",
            datetime.fromtimestamp(since, UTC).replace(tzinfo=None),
        )
    )
    return [
        (
            row["job_name"],
            _aware(row["started_at"]).timestamp(),
            _aware(row["finished_at"]).timestamp() if row["finished_at"] else None,
            _outcome(row["outcome"], row["summary"]),
            _seconds(row["summary"]),
        )
        for row in rows
    ]


def _outcome(outcome: str, summary: object) -> str:
    """The run's outcome, saying so when a 'success' could not reach a region (nothing observed there)."""
    if isinstance(summary, str):  # asyncpg hands JSON columns over as text
        summary = json.loads(summary)
    failed = summary.get("failed_regions") if isinstance(summary, dict) else None
    return f"{outcome}, region failed" if failed else outcome


def _seconds(summary: object) -> dict[str, float]:
    if isinstance(summary, str):
        summary = json.loads(summary)
    seconds = summary.get("seconds") if isinstance(summary, dict) else None
    return {str(k): float(v) for k, v in seconds.items()} if isinstance(seconds, dict) else {}


def wait_for(what: str, condition: object, timeout: float) -> bool:
    """Poll `condition()` every half second until true or `timeout`; False (and a line saying so) on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.5)
    print(f"    (gave up waiting for {what} after {timeout:.0f}s)", flush=True)
    return False


def settle(db: ScratchDatabase, started: float, timeout: float) -> bool:
    """Until the jobs' first runs since `started` are over: worker-metrics has finished one and no other job
    is running (each claims its current tick at start; labs-refresh over 1,000 workers takes a while)."""

    def done() -> bool:
        runs = [run for run in job_runs(db, started) if run[1] >= started]
        first = any(job == JOB and end is not None for job, _, end, *_ in runs)
        return first and not any(job != JOB and end is None for job, _, end, *_ in runs)

    return wait_for("the jobs' first runs", done, timeout)


def no_run_going(db: ScratchDatabase, since: float) -> bool:
    """No run started since `since` (the processes' start) is still going."""
    return not any(end is None and began >= since for _, began, end, *_ in job_runs(db, since))


def metrics_run_started(db: ScratchDatabase, after: float) -> bool:
    return any(job == JOB and began >= after for job, began, *_ in job_runs(db, after))


def load(
    system: System, plan: Plan, rate: int, ids_file: Path, token_file: Path, out: Path, sampler: CpuSampler
) -> dict[str, object]:
    """One open-loop phase from a fresh generator process in a session of its own (a client, not part of the
    product's); its CPU joins the sampler while it runs."""
    command = [sys.executable, "-m", "bench.loadgen", "--url", system.url, "--rate", str(rate)]
    command += ["--seconds", str(plan.warmup + plan.seconds), "--ids", str(ids_file)]
    command += ["--list-every", str(plan.list_every), "--token-file", str(token_file), "--out", str(out)]
    proc = subprocess.Popen(command, cwd=ROOT, start_new_session=True)
    sampler.groups["loadgen"] = [proc.pid]
    if proc.wait() != 0:
        raise RuntimeError(f"load generator failed with {proc.returncode}")
    sampler.groups["loadgen"] = []
    result: dict[str, object] = json.loads(out.read_text())
    return result


def phase_from(
    key: tuple[str, str, int, bool, int],
    plan: Plan,
    raw: dict[str, object],
    sampler: CpuSampler,
    runs: list[RunRow],
    others: list[tuple[str, float]],
) -> Phase:
    scenario, mode, rate, jobs, round_number = key
    start = float(raw["t0_wall"]) + plan.warmup  # type: ignore[arg-type]
    records = [
        (due - plan.warmup, latency * 1000, status, kind, lag * 1000)
        for due, latency, status, kind, lag in raw["records"]  # type: ignore[attr-defined]
        if due >= plan.warmup
    ]
    end = start + plan.seconds
    overlapping = [
        JobRun(job, began - start, None if finished is None else finished - start, outcome, seconds)
        for job, began, finished, outcome, seconds in runs
        if began < end and (finished is None or finished > start)
    ]
    return Phase(
        scenario,
        mode,
        rate,
        jobs,
        start,
        plan.seconds,
        records,
        int(raw["peak_connections"]),  # type: ignore[call-overload]
        sampler.between(start, end),
        overlapping,
        round_number,
        others,
    )


@dataclass
class Bench:
    """What every scenario and mode shares: the plan, the database, the fleet, the tokens, the log directory."""

    plan: Plan
    db: ScratchDatabase
    fleet: Fleet
    env: dict[str, str]
    ids_file: Path
    token_file: Path
    admin_token: str
    log_dir: Path


def run_mode(
    bench: Bench, scenario: Scenario, mode: str, worker_group: CpuGroup | None
) -> tuple[list[Phase], list[tuple[float, dict[str, float]]], list[str]]:
    plan, db = bench.plan, bench.db
    env = dict(bench.env)
    if scenario.redis:
        env |= {"REDIS_URL": REDIS, "REDIS_PREFIX": db.name}
    notes: list[str] = []
    started = time.time()
    system = System(scenario, mode, env, bench.log_dir, bench.admin_token, worker_group)
    groups: dict[str, list[int] | str] = {name: [pid] for name, pid in system.pids.items()}
    groups |= {name: [pid] for name, pid in bench.fleet.pids.items()}
    groups |= {"postgres": "postgres", "redis": "redis-server", "loadgen": []}
    front = "api" if mode == "split" else "all"
    sampler = CpuSampler(groups, waits=(front,)).start()
    ours = {os.getpid(), *system.pids.values(), *bench.fleet.pids.values()}
    phases = []
    try:
        if not settle(db, started, plan.settle_timeout):
            late = f"the jobs' first runs had not ended after {plan.settle_timeout:.0f}s"
            notes.append(f"({scenario.key}) {mode}: {late}")
        if "worker" in system.pids:  # read once it has run a job: it lowers its priority as it starts
            nice = niceness(system.pids["worker"])
            print(f"  ({scenario.key}) {mode}: pids {system.pids}, worker niceness {nice}", flush=True)
            notes.append(f"({scenario.key}) {mode}: the worker ran at niceness {nice}")
        for number in range(1, plan.rounds + 1):
            for jobs in (True, False):
                switched = time.time()
                if jobs and number > 1:
                    system.set_jobs(None)
                    wait_for(f"a {JOB} run", lambda: metrics_run_started(db, switched), 3 * INTERVAL)  # noqa: B023
                elif not jobs:
                    system.set_jobs(False)
                    wait_for("the jobs' runs to end", lambda: no_run_going(db, started), 3 * INTERVAL)
                for rate in plan.rates:
                    label = f"({scenario.key}) {mode}, {rate} req/s, jobs {'on' if jobs else 'off'}, round {number}"
                    print(f"  {label}: {plan.seconds:.0f}s of load", flush=True)
                    out = bench.log_dir / f"load-{scenario.key}-{mode}-{rate}-{jobs}-{number}.json"
                    before, began = cpu_table(), time.time()
                    raw = load(system, plan, rate, bench.ids_file, bench.token_file, out, sampler)
                    after, ended = cpu_table(), time.time()
                    others = [
                        (name, used)
                        for name, used in busiest_others(before, after, ended - began, ours)
                        if name not in ("postgres", "redis-server")  # sampled as groups of their own
                    ]
                    start = float(raw["t0_wall"]) + plan.warmup  # type: ignore[arg-type]
                    phase = phase_from(
                        (scenario.key, mode, rate, jobs, number), plan, raw, sampler, job_runs(db, start), others
                    )
                    s = phase.summary()
                    per_request = phase.api_ms_per_request()
                    metrics = ", ".join(f"{r.duration:.1f} {r.outcome}{r.split}" for r in phase.metrics_runs()) or "-"
                    print(
                        f"    {s.text()}, errors {s.errors}, API CPU {per_request or 0:.3f} ms/request, "
                        f"{JOB} runs {metrics} s, generator lag p99 {phase.lag().p99:.2f} ms",
                        flush=True,
                    )
                    phases.append(phase)
                    time.sleep(1)  # a backlog from an overloaded phase must not leak into the next
        system.set_jobs(None)  # the next mode starts from the defaults again
    finally:
        samples = sampler.stop()
        system.stop()
    return phases, samples, notes


@contextmanager
def placed(scenario: Scenario, fleet: Fleet) -> Iterator[tuple[CpuGroup | None, list[str]]]:
    """The scenario's placement for the block: nothing for (a); for (b) CPU 1 for everything but the API, the
    stand-ins in an idle CPU class and a CPU group for the worker. Yields the worker's group and notes."""
    if not scenario.dedicated:
        yield None, []
        return
    with ExitStack() as stack:
        pin_self({1})  # everything started from here on shares CPU 1; the API gets CPU 0 by taskset
        stack.callback(pin_self, None)
        unpinned = stack.enter_context(everything_on({1}))
        background = stack.enter_context(CpuGroup("cml-bench-background", idle=True, fallback_nice=10))
        worker_group = stack.enter_context(CpuGroup("cml-bench-worker", shares=WORKER_SHARES))
        notes = [f"(b): could not move {name} off the API's core" for name in unpinned]
        notes += [f"(b): {group.refused}" for group in (background, worker_group) if group.refused]
        for pid in fleet.pids.values():
            # Remote hosts in production: in the idle class they take no CPU the measured processes want.
            background.add(pid)
        yield worker_group, notes


def run_separation(plan: Plan, log_dir: Path | None = None) -> SeparationResult:
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="bench-separation-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    db = asyncio.run(ScratchDatabase.create("bench_sep"))
    phases: list[Phase] = []
    samples: dict[str, list[tuple[float, dict[str, float]]]] = {}
    notes: list[str] = []
    try:
        with Fleet(log_dir) as fleet:
            began = time.perf_counter()
            fleet.grow(plan.workers)
            imported = asyncio.run(prepare_database(fleet, db.url))
            viewer, admin = asyncio.run(_tokens(fleet, db.url))
            print(f"  fleet: {imported} workers imported in {time.perf_counter() - began:.0f}s", flush=True)
            ids = [row["id"] for row in asyncio.run(db.fetch("SELECT id FROM workers ORDER BY id"))]
            ids_file = log_dir / "worker-ids.txt"
            ids_file.write_text("\n".join(ids))
            token_file = log_dir / "viewer-token"
            token_file.write_text(viewer)
            token_file.chmod(0o600)
            env = {
                **fleet.app_env(),
                "DATABASE_URL": db.url,
                "WORKER_METRICS_INTERVAL": str(INTERVAL),
                "AUTO_IMPORT_ENABLED": "true",
                **plan.extra_env,
            }
            bench = Bench(plan, db, fleet, env, ids_file, token_file, admin, log_dir)
            for key in plan.scenarios:
                scenario = SCENARIOS[key]
                with placed(scenario, fleet) as (worker_group, placement_notes):
                    notes += placement_notes
                    for note in placement_notes:
                        print(f"  {note}", flush=True)
                    for mode in plan.modes:
                        mode_phases, samples[f"{key} {mode}"], mode_notes = run_mode(
                            bench, scenario, mode, worker_group
                        )
                        phases += mode_phases
                        notes += mode_notes
    finally:
        asyncio.run(db.drop())
    return SeparationResult(plan, phases, samples, notes)


async def _tokens(fleet: Fleet, database_url: str) -> tuple[str, str]:
    """A viewer token for the load (what a person watching the fleet holds) and an admin one for the switches."""
    db = Database(fleet.settings(database_url))
    try:
        return (
            await tokens.create(db, name="bench-viewer", role=Role.VIEWER),
            await tokens.create(db, name="bench-admin", role=Role.ADMIN),
        )
    finally:
        await db.dispose()
