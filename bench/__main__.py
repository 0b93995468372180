"""`python -m bench` (`make bench`): the seed's performance claims, measured side by side, with charts.

  python -m bench [--quick] [--only separation sse jobs] [--scenarios a b] [--modes split all]
                  [--set NAME=VALUE ...] [--out bench/results] [--no-docs]

Sections: separation (API latency, combined vs split processes, with and without jobs), SSE (capacity,
memory, latency, throughput of one API process) and jobs (worker-metrics duration by fleet size, duplicate
runs across replicas). Everything runs on this machine against real processes on loopback: PostgreSQL and
Redis (127.0.0.1), the AWS emulator and the CML simulator. Writes bench/results/<date>.md plus PNG charts and,
after a full run, the table in docs/benchmarks.md and in the README (with the latency chart). `--quick` is a
~4 minute smoke run with shorter phases and smaller sizes; its file is <date>-quick.md and it leaves the docs
alone.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

from . import charts, figures, report
from .common import PG, cores, taskset_prefix
from .jobs import JobsPlan, run_jobs
from .separation import MODES, SCENARIOS, Plan, run_separation
from .sse_fanout import SsePlan, run_sse
from .stats import Figure, announce

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("separation", "sse", "jobs")


def plans(args: argparse.Namespace) -> tuple[Plan, SsePlan, JobsPlan]:
    extra = dict(item.split("=", 1) for item in args.set)
    scenarios, modes = tuple(args.scenarios), tuple(args.modes)
    if args.quick:
        return (
            Plan(rates=[500], seconds=8, warmup=2, rounds=1, scenarios=scenarios, modes=modes, extra_env=extra),
            SsePlan(idle=2000, seconds=4, levels=[50], burst=200, hold=3, latency_runs=1),
            JobsPlan(sizes=[100, 1000], runs=1, race_seconds=12),
        )
    return Plan(scenarios=scenarios, modes=modes, extra_env=extra), SsePlan(), JobsPlan()


async def _ping_postgres() -> None:
    conn = await asyncio.wait_for(asyncpg.connect(f"{PG}/postgres"), 5)
    await conn.close()


def preflight() -> list[str]:
    """Refuse early, with the reason, rather than fail ten minutes in; returns warnings for the notes."""
    notes = []
    taskset_prefix(0)  # raises with the package to install when taskset is missing
    try:
        asyncio.run(_ping_postgres())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise SystemExit(f"bench: PostgreSQL on 127.0.0.1:5432 (user postgres, trust) is needed: {exc}") from None
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=2).close()
    except OSError as exc:
        raise SystemExit(f"bench: Redis on 127.0.0.1:6379 is needed: {exc}") from None
    if cores() < 2:
        notes.append("one core only: nothing could be pinned apart, every process shares it")
    return notes


Outcome = tuple[list[Figure], list[str], list[Path]]  # table rows, details, charts
ChartPath = Callable[[str], Path]


def separation(plan: Plan, logs: Path, chart: ChartPath, preamble: list[str]) -> Outcome:
    result = run_separation(plan, logs)
    pictures = [
        charts.separation_latency(result, chart("separation-latency")),
        charts.separation_cpu(result, chart("separation-cpu")),
        charts.separation_summary(result, chart("separation-summary")),
    ]
    preamble += [figures.headline(result), *report.legend(result)]
    return figures.separation_figures(result), report.separation_details(result), pictures


def sse(plan: SsePlan, logs: Path, chart: ChartPath) -> Outcome:
    result = asyncio.run(run_sse(plan, logs))
    return figures.sse_figures(result), report.sse_details(result), [charts.sse_chart(result, chart("sse"))]


def jobs(plan: JobsPlan, logs: Path, chart: ChartPath) -> Outcome:
    result = run_jobs(plan, logs)
    return figures.jobs_figures(result), report.jobs_details(result), [charts.jobs_chart(result, chart("jobs"))]


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: short phases, small sizes (~4 min)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="where results go")
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md and the README")
    parser.add_argument(
        "--scenarios", nargs="+", choices=sorted(SCENARIOS), default=sorted(SCENARIOS), help="separation scenarios"
    )
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="separation modes")
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="NAME=VALUE",
        help="a setting changed from the defaults for the separation section (e.g. WORKER_NICE=0); named in every "
        "row; leaves the docs alone",
    )
    args = parser.parse_args()
    if any("=" not in item for item in args.set):
        parser.error("--set takes NAME=VALUE")
    # A plain SIGTERM would skip the clean-ups: CPU masks of the machine's processes, the CPU cgroup, children.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    notes = preflight()
    background = report.busy_share()
    if background > 0.2:
        notes.append(f"the machine was {100 * background:.0f}% busy before the run: figures may be pessimistic")
        print(f"warning: {notes[-1]}", flush=True)
    separation_plan, sse_plan, jobs_plan = plans(args)
    args.out.mkdir(parents=True, exist_ok=True)
    partial = "" if set(args.only) == set(SECTIONS) else "-" + "-".join(s for s in SECTIONS if s in args.only)
    stem = datetime.date.today().isoformat() + partial + ("-quick" if args.quick else "")
    logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    print(f"bench: {cores()} cores; sections {', '.join(args.only)}; process logs in {logs}", flush=True)

    began = time.perf_counter()
    table: list[Figure] = []
    details: dict[str, list[str]] = {}
    drawn: list[Path] = []
    preamble: list[str] = []  # the headline and the scenarios' legend, above the table
    chart = lambda suffix: args.out / f"{stem}-{suffix}.png"  # noqa: E731
    runners: dict[str, Callable[[], Outcome]] = {
        "separation": lambda: separation(separation_plan, logs / "separation", chart, preamble),
        "sse": lambda: sse(sse_plan, logs / "sse", chart),
        "jobs": lambda: jobs(jobs_plan, logs / "jobs", chart),
    }
    for name in (s for s in SECTIONS if s in args.only):
        print(f"\n== {name} ==", flush=True)
        started = time.perf_counter()
        found, body, pictures = runners[name]()
        table.extend(announce(f) for f in found)
        details[name.capitalize() if name != "sse" else "SSE"] = body
        drawn.extend(pictures)
        print(f"   ({(time.perf_counter() - started) / 60:.1f} min)", flush=True)

    runtime = time.perf_counter() - began
    results = args.out / f"{stem}.md"
    title = f"Benchmarks {stem}" + (" (quick smoke run: shorter phases, smaller sizes)" if args.quick else "")
    report.write(results, title, background, table, details, drawn, runtime, notes, preamble)
    missed = [f for f in table if f.met is False]
    print(f"\n{len(table)} figures, {len(missed)} targets missed, {runtime / 60:.1f} min on {cores()} cores")
    complete = set(args.only) == set(SECTIONS) and set(args.scenarios) == set(SCENARIOS) and not args.set
    if not args.quick and not args.no_docs and complete:
        latency = [chart for chart in drawn if chart.stem.endswith("separation-latency")]
        busy = report.busy_note(background, table)
        for page, charts in ((ROOT / "docs" / "benchmarks.md", []), (ROOT / "README.md", latency)):
            if report.update_page(page, results, table, charts, preamble, busy):
                print(f"updated the table in {page.relative_to(ROOT)}")
    print(f"results: {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
