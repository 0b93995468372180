"""The results file: the machine, the table of figures, the details of each section and the charts."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from importlib import metadata
from pathlib import Path

from .common import cores, loopback_round_trip
from .jobs import JobsResult
from .separation import SCENARIOS, SETTINGS, SeparationResult
from .sse_fanout import SseResult
from .stats import Figure, ms

STACK = ("fastapi", "starlette", "uvicorn", "uvloop", "pydantic", "sqlalchemy", "asyncpg")
DOCS_MARKERS = ("<!-- bench:latest:start -->", "<!-- bench:latest:end -->")


def _first_line(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


def busy_share(seconds: float = 1.0) -> float:
    """Share of all CPU time spent busy over `seconds`: anything else running would skew every figure."""

    def read() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
        idle = values[3] + values[4]
        return sum(values) - idle, sum(values)

    busy0, total0 = read()
    time.sleep(seconds)
    busy1, total1 = read()
    return (busy1 - busy0) / max(1, total1 - total0)


# Above this share of one core used by processes the benchmark did not start, in some phase, the run is labelled.
BUSY_OTHER_PERCENT = 20.0


def busy_note(background: float, figures: list[Figure]) -> str:
    """', machine busy with other work: ...' when the run shared the machine, else ''."""
    worst = 0.0
    for figure in figures:
        if figure.name.startswith("CPU used by what the benchmark did not start"):
            worst = max(worst, float(figure.value.split("%")[0]))
    if background <= 0.2 and worst <= BUSY_OTHER_PERCENT:
        return ""
    return (
        f"; **machine busy with other work**: {100 * background:.0f}% busy before the run, up to {worst:.0f}% of "
        "one core used by processes the benchmark did not start during a phase; figures are pessimistic"
    )


def machine(background: float) -> list[str]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    with open("/proc/meminfo") as info:
        memory = int(info.readline().split()[1]) / 1024 / 1024
    commit = _first_line(["git", "rev-parse", "--short", "HEAD"])
    dirty = " (with uncommitted changes)" if _first_line(["git", "status", "--porcelain"]) != "unknown" else ""
    same = loopback_round_trip(0, 0)
    across = loopback_round_trip(0, 1) if cores() > 1 else same
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in STACK)
    return [
        f"- CPU: {cpu}, **{cores()} cores**; memory {memory:.0f} GiB",
        f"- loopback TCP round trip (median): {same:.0f} us on one core, {across:.0f} us between cores 0 and 1 "
        "(every request, database query and SSE write between the pinned processes crosses cores)",
        f"- {versions}",
        f"- Python {platform.python_version()}; {_first_line(['psql', '--version'])}; "
        f"{_first_line(['redis-server', '--version'])}",
        f"- code: commit {commit}{dirty}",
        f"- CPU busy before the run started (other load on the machine): {100 * background:.0f}%",
    ]


def table(figures: list[Figure]) -> list[str]:
    rows = [
        "| section | scenario and settings | figure | value | target | met? | compared with |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        met = "" if f.met is None else ("yes" if f.met else "**no**")
        rows.append(f"| {f.section} | {f.setting} | {f.name} | {f.value} | {f.target} | {met} | {f.compared} |")
    return rows


def legend(result: SeparationResult | None) -> list[str]:
    """What the separation rows' scenario names and `defaults` mean, above the table."""
    if result is None:
        return []
    plan = result.plan
    lines = [
        f"Scenarios (separation rows, {plan.seconds:g} s phases): "
        + "; ".join(f"**{SCENARIOS[key].title}**: {SCENARIOS[key].layout}" for key in plan.scenarios)
        + "."
    ]
    lines.append(
        f"`defaults`: {SETTINGS.removeprefix('defaults: ')}; load: open loop, one request in {plan.list_every} "
        "lists 100 workers, the others fetch one, each with a viewer token; the load generator at normal priority."
    )
    return lines


def separation_details(result: SeparationResult) -> list[str]:
    plan = result.plan
    lines = [
        f"Open-loop load for {plan.seconds:.0f} s per phase after {plan.warmup:.0f} s of warm-up; per scenario and "
        f"mode, the processes start, the jobs' first runs end, then a phase with the jobs on and one with all five "
        f"off, {plan.rounds} times (rounds; the table's figures are medians over them). Latency runs from each "
        "request's due time. " + " ".join(legend(result)),
        "",
        "CPU is the mean over the phase, in percent of one core; `<process> wait` is the share of time the "
        "process was ready to run but waited for a CPU (contention, not work); `other` is CPU used by anything "
        "the benchmark did not start (other processes, the kernel's own work; the busiest are named under 'also "
        "running'): high values mean a disturbed run. `up` is the supervisor of split mode in scenario (a).",
        "",
        *[f"- {note}" for note in result.notes],
        "",
        "| scenario | mode | round | rate | jobs | p50 | p90 | p99 | p99.9 | max | errors | list p99 | get p99 | "
        "API CPU per request | generator lag p99 | connections | job runs | CPU by process | also running |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in result.phases:
        s = p.summary()
        runs = (
            ", ".join(
                f"{run.job} {run.duration:.1f}s {run.outcome}{run.split}"
                if run.duration is not None
                else f"{run.job} running"
                for run in p.runs
            )
            or "-"
        )
        cpu = ", ".join(f"{name} {value:.0f}%" for name, value in p.cpu.items() if value >= 1)
        others = ", ".join(f"{name} {used:.0f}%" for name, used in p.others[:4] if used >= 1) or "-"
        per_request = p.api_ms_per_request()
        lines.append(
            f"| ({p.scenario}) | {p.mode} | {p.round} | {p.rate}/s | {'on' if p.jobs else 'off'} | {ms(s.p50)} | "
            f"{ms(s.p90)} | {ms(s.p99)} | {ms(s.p999)} | {ms(s.max)} | {s.errors} | {ms(p.summary(0).p99)} | "
            f"{ms(p.summary(1).p99)} | {f'{per_request:.3f} ms' if per_request else 'n/a'} | {ms(p.lag().p99)} | "
            f"{p.peak_connections} | {runs} | {cpu} | {others} |"
        )
    return lines


def sse_details(result: SseResult) -> list[str]:
    lines = [
        f"Idle clients: {result.connected:,} connected ({result.failed or 'no failures'}), "
        f"{result.still_open:,} still open after {result.plan.hold:.0f} s, server gauge {result.server_count:,}; "
        f"API CPU while holding them {result.idle_cpu:.1f}%. RSS steps (clients: MiB): "
        + ", ".join(f"{c:,}: {r / 1024:.0f}" for c, r in result.rss_steps),
        "",
        "| events/s | clients | delivered / expected | deliveries/s | p50 | p99 | max | API CPU | sustained |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    levels = [*result.levels, *([result.burst] if result.burst else [])]
    for lv in levels:
        name = str(lv.events_per_second) if lv.events_per_second else f"burst of {result.plan.burst}"
        lat = lv.latency
        lines.append(
            f"| {name} | {result.plan.clients:,} | {lv.delivered:,} / {lv.expected:,} | {lv.rate:,.0f} | "
            f"{ms(lat.p50)} | {ms(lat.p99)} | {ms(lat.max)} | {lv.api_cpu:.0f}% | "
            f"{'yes' if lv.sustained else 'no'} |"
        )
    return lines


def jobs_details(result: JobsResult) -> list[str]:
    lines = [
        "| workers | runs (s) | median | AWS calls alone | first run after import (s) | last summary |",
        "|---|---|---|---|---|---|",
    ]
    for s in sorted(result.sizes, key=lambda s: s.workers):
        runs = ", ".join(f"{d:.2f}" for d in s.durations)
        lines.append(f"| {s.workers:,} | {runs} | {s.median:.2f} s | {s.aws:.2f} s | {s.warmup:.1f} | `{s.summary}` |")
    for size, why in sorted(result.failed.items()):
        lines.append(f"| {size:,} | not measured | | | | {why} |")
    if result.race:
        r = result.race
        lines += [
            "",
            f"Race: {r.replicas} worker processes for {r.seconds:.0f} s; ticks {r.ticks}, duplicates "
            f"{r.duplicates}, skipped {r.missed}; runs per process {sorted(r.by_process.values())}; "
            f"outcomes {r.outcomes}.",
        ]
    return lines


def write(
    path: Path,
    title: str,
    background: float,
    figures: list[Figure],
    details: dict[str, list[str]],
    charts: list[Path],
    runtime: float,
    notes: list[str],
    preamble: list[str],
) -> None:
    lines = [
        f"# {title}",
        "",
        *machine(background),
        f"- runtime: {runtime / 60:.1f} min",
        "",
        "## Figures",
        "",
        *[line for text in preamble for line in (text, "")],
        *table(figures),
        "",
    ]
    if notes:
        lines += ["## Notes", "", *[f"- {note}" for note in notes], ""]
    for section, body in details.items():
        lines += [f"## {section}", "", *body, ""]
    if charts:
        lines += ["## Charts", "", *[f"![{c.stem}]({c.name})" for c in charts], ""]
    path.write_text("\n".join(lines))


def update_page(
    page: Path, results: Path, figures: list[Figure], charts: list[Path], preamble: list[str], busy: str
) -> bool:
    """Replace what lies between the markers in `page` with the table (and charts) of this run, linked relative
    to the page; False when the page or its markers are missing."""
    if not page.exists():
        return False
    text = page.read_text()
    start, end = DOCS_MARKERS
    if start not in text or end not in text:
        return False

    def link(path: Path) -> str:
        return os.path.relpath(path, page.parent)

    head = f"From [{results.name}]({link(results)}) ({cores()} cores{busy})."
    pictures = [f"![{chart.stem}]({link(chart)})" for chart in charts]
    intro = [line for text in preamble for line in (text, "")]
    body = "\n".join([start, head, "", *intro, *table(figures), *(["", *pictures] if pictures else []), end])
    page.write_text(re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: body, text, flags=re.S))
    return True
