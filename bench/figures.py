"""Turning each section's measurements into table rows: value, target, met, and what it was compared against."""

from __future__ import annotations

import statistics

from .jobs import JobsResult
from .separation import INTERVAL, SCENARIOS, SeparationResult
from .sse_fanout import SseResult
from .stats import Figure, ms, ratio

SPLIT_P99_TARGET_MS = {"a": 10.0, "b": 3.0}  # issue 20: at 500 req/s, token auth, worker-metrics every 10 s
JOBS_OVER_IDLE = {"a": 1.5}  # split mode's p99 with jobs / its own p99 with jobs off
API_MS_PER_REQUEST = {"a": 0.25}
METRICS_RUN_SECONDS = {"a": 5.0}  # worker-metrics over 1,000 workers, under the load
TARGET_RATE = 500
# What the SSE and jobs sections run with (bench/sse_fanout.py, bench/jobs.py): not the product's defaults.
SSE_SETTING = "one `api` alone on CPU 0, clients on CPU 1; auth off, access log off, PostgreSQL + Redis"
JOBS_SETTING = "the job in the bench process, no API load, nothing pinned, PostgreSQL"
RACE_SETTING = "3 `worker` processes, auth and access log off, PostgreSQL + Redis"
MODE_NAMES = {"split": "split (`api` + `worker`)", "all": "combined (`all`)"}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _each(values: list[float]) -> str:
    return ", ".join(ms(v) for v in values)


def separation_figures(result: SeparationResult) -> list[Figure]:
    """Latencies are medians over the rounds; a ratio is taken within each round (same processes, a minute
    apart) and its median reported. Every row names its scenario and settings."""
    out: list[Figure] = []
    section = "Separation"
    plan = result.plan
    rounds = f"median of {plan.rounds} round{'s' if plan.rounds > 1 else ''} of {plan.seconds:g} s"
    for key in plan.scenarios:
        scenario = SCENARIOS[key]
        setting = scenario.label(plan.extra_env)

        def add(name: str, value: str, target: str = "", met: bool | None = None, compared: str = "") -> None:
            out.append(Figure(section, name, value, target, met, compared, setting))  # noqa: B023

        for rate in plan.rates:
            target = rate == TARGET_RATE
            on = {mode: result.rounds(key, mode, rate, True) for mode in plan.modes}
            off = {mode: result.rounds(key, mode, rate, False) for mode in plan.modes}
            for mode in plan.modes:
                for jobs, phases in ((True, on[mode]), (False, off[mode])):
                    if not phases:
                        continue
                    p99 = _median([p.summary().p99 for p in phases])
                    p999 = _median([p.summary().p999 for p in phases])
                    errors = sum(p.summary().errors for p in phases)
                    limit = SPLIT_P99_TARGET_MS.get(key) if mode == "split" and jobs and target else None
                    each = _each([p.summary().p99 for p in phases])
                    add(
                        f"{MODE_NAMES[mode]}, {rate} req/s, jobs {'on' if jobs else 'off'}: p99 / p99.9",
                        f"{ms(p99)} / {ms(p999)} ({errors} errors; p99 by round {each})",
                        f"p99 <= {limit:g} ms" if limit else "",
                        (p99 <= limit and errors == 0) if limit else None,
                        rounds,
                    )
            split_on, split_off = on.get("split", []), off.get("split", [])
            if split_on and split_off:
                ratios = [ratio(j.summary().p99, i.summary().p99) for j, i in zip(split_on, split_off, strict=False)]
                limit = JOBS_OVER_IDLE.get(key) if target else None
                add(
                    f"split, {rate} req/s: p99 jobs on / jobs off",
                    f"{_median(ratios):.2f}x (rounds {', '.join(f'{r:.2f}' for r in ratios)})",
                    f"<= {limit:g}x" if limit else "",
                    _median(ratios) <= limit if limit else None,
                    f"split mode with all five jobs off, same processes, same round; {rounds}",
                )
            combined = on.get("all", [])
            if combined and split_on:
                pairs = [(a.summary().p99, b.summary().p99) for a, b in zip(combined, split_on, strict=False)]
                add(
                    f"combined / split at {rate} req/s with jobs on: p99 ratio",
                    f"{_median([ratio(a, b) for a, b in pairs]):.1f}x",
                    "",
                    None,
                    f"split mode, same load, same scenario and round; {rounds}",
                )
            for mode in plan.modes:
                cpu = [c for p in on[mode] if (c := p.api_ms_per_request()) is not None]
                if cpu:
                    limit = API_MS_PER_REQUEST.get(key) if mode == "split" and target else None
                    per_request = _median(cpu)
                    add(
                        f"{'API' if mode == 'split' else '`all`'} CPU per request, {MODE_NAMES[mode]}, {rate} req/s, "
                        "jobs on",
                        f"{per_request:.3f} ms (one core: at most ~{1000 / per_request:,.0f} req/s of this mix)",
                        f"<= {limit:g} ms" if limit else "",
                        per_request <= limit if limit else None,
                        f"the serving process's CPU over the phase / requests answered; {rounds}",
                    )
                runs = [run for p in on[mode] for run in p.metrics_runs()]
                if runs:
                    durations = sorted(run.duration or 0.0 for run in runs)
                    timed_out = sum(1 for run in runs if run.outcome != "success")
                    limit = METRICS_RUN_SECONDS.get(key) if mode == "split" and target else None
                    median = _median(durations)
                    parts = sorted({k for run in runs for k in run.seconds})
                    split = ", ".join(
                        f"{k} {_median([r.seconds[k] for r in runs if k in r.seconds]):.1f} s" for k in parts
                    )
                    add(
                        f"worker-metrics over {plan.workers:,} workers under load, {MODE_NAMES[mode]}, {rate} req/s",
                        f"median {median:.2f} s{f' ({split})' if split else ''}, max {durations[-1]:.2f} s "
                        f"({len(runs)} runs, {timed_out} not successful)",
                        f"<= {limit:g} s" if limit else "",
                        (median <= limit and timed_out == 0) if limit else None,
                        "runs that began and ended inside the jobs-on phases (its timeout: 9 s)",
                    )
        phases = [p for p in result.phases if p.scenario == key]
        other = max((p.cpu.get("other", 0.0) for p in phases), default=0.0)
        busiest: dict[str, float] = {}
        for p in phases:
            for name, used in p.others[:5]:
                busiest[name] = max(busiest.get(name, 0.0), used)
        top = ", ".join(f"{name} {used:.0f}%" for name, used in sorted(busiest.items(), key=lambda i: -i[1])[:4])
        add(
            "CPU used by what the benchmark did not start, worst phase",
            f"{other:.0f}% of one core" + (f" (busiest: {top})" if top else ""),
            "",
            None,
            "high values mean the machine was shared during the run and latencies are pessimistic",
        )
        lag = max((p.lag().p99 for p in phases), default=0.0)
        add(
            "load generator lag, worst phase p99",
            ms(lag),
            "",
            None,
            "its own schedule: how late it sent (at normal priority; must stay far below the latencies)",
        )
    return out


def headline(result: SeparationResult) -> str:
    """One sentence leading with scenario (a), for the README and docs/benchmarks.md."""
    plan = result.plan
    rate = TARGET_RATE if TARGET_RATE in plan.rates else max(plan.rates)

    def p(key: str, mode: str, jobs: bool = True) -> str:
        phases = result.rounds(key, mode, rate, jobs)
        if not phases:
            return "n/a"
        return f"{ms(_median([x.summary().p99 for x in phases]))} / {ms(_median([x.summary().p999 for x in phases]))}"

    parts = []
    if "a" in plan.scenarios:
        cpu = [c for x in result.rounds("a", "split", rate, True) if (c := x.api_ms_per_request()) is not None]
        runs = [r.duration or 0.0 for x in result.rounds("a", "split", rate, True) for r in x.metrics_runs()]
        parts.append(
            f"**(a) shared box** (`up` as `make run` starts it, defaults, token auth), {rate} req/s with all jobs on "
            f"and worker-metrics every {INTERVAL} s over {plan.workers:,} workers: split p99 / p99.9 {p('a', 'split')} "
            f"(jobs off: {p('a', 'split', False)}), combined {p('a', 'all')}; API CPU "
            + (f"{_median(cpu):.3f} ms per request" if cpu else "n/a")
            + (f"; worker-metrics {_median(runs):.1f} s (median) under that load" if runs else "")
        )
    if "b" in plan.scenarios:
        parts.append(f"**(b) dedicated API core**, same settings: split {p('b', 'split')}, combined {p('b', 'all')}")
    return ". ".join(parts) + "."


def sse_figures(result: SseResult) -> list[Figure]:
    section = "SSE"
    plan = result.plan
    held = min(result.still_open, result.server_count) if result.server_count >= 0 else result.still_open
    runs = result.latency_runs
    out = [
        Figure(
            section,
            "idle SSE clients held by one API process",
            f"{held:,} of {plan.idle:,}",
            ">= 10,000",
            held >= 10_000 if plan.idle >= 10_000 else None,
            f"open after {plan.hold:.0f}s, counted by the clients and the server"
            + ("" if plan.idle >= 10_000 else "; this run asked for fewer than the target"),
        ),
        Figure(
            section,
            "API memory per idle SSE client",
            f"{result.kb_per_client:.1f} KB",
            "<= 50 KB",
            result.kb_per_client <= 50,
            "slope of API RSS over clients connected",
        ),
    ]
    if runs:
        p50, p99 = _median([r.p50 for r in runs]), _median([r.p99 for r in runs])
        complete = (
            f"median of {len(runs)} runs of {plan.seconds:g} s; {result.delivered:,} of {result.expected:,} delivered"
        )
        out += [
            Figure(
                section,
                f"commit-to-client latency, {plan.clients:,} clients, {plan.rate:g} events/s: p50",
                ms(p50),
                "<= 20 ms",
                p50 <= 20,
                complete,
            ),
            Figure(
                section,
                f"commit-to-client latency, {plan.clients:,} clients, {plan.rate:g} events/s: p99",
                ms(p99),
                "<= 100 ms",
                p99 <= 100,
                complete,
            ),
        ]
    best = result.sustained
    out.append(
        Figure(
            section,
            "deliveries per second sustained by one API process",
            f"{best.rate:,.0f}/s ({best.events_per_second} events/s x {plan.clients:,} clients)" if best else "none",
            ">= 50,000",
            best is not None and best.rate >= 50_000,
            f"every delivery arrived and p99 latency stayed <= 1 s; offered levels {plan.levels} events/s",
        )
    )
    if result.burst is not None:
        out.append(
            Figure(
                section,
                f"burst of {plan.burst:,} events to {plan.clients:,} clients, drained",
                f"{result.burst.rate:,.0f} deliveries/s",
                "",
                None,
                "many events per write: the best case",
            )
        )
    for figure in out:
        figure.setting = SSE_SETTING
    return out


def jobs_figures(result: JobsResult) -> list[Figure]:
    section = "Jobs"
    out = []
    by_size = {s.workers: s for s in result.sizes}
    for size in sorted(by_size):
        s = by_size[size]
        target = "<= 10 s" if size == 1000 else ""
        out.append(
            Figure(
                section,
                f"worker-metrics over {size:,} simulated workers",
                f"{s.median:.2f} s",
                target,
                s.median <= 10 if size == 1000 else None,
                f"median of {len(s.durations)} runs; {1000 * s.median / size:.1f} ms per worker; the AWS emulator's "
                f"calls alone take {s.aws:.1f} s of it",
            )
        )
    for size, why in sorted(result.failed.items()):
        out.append(Figure(section, f"worker-metrics over {size:,} simulated workers", "not measured", "", None, why))
    if 1000 in by_size and max(by_size) > 1000:
        top = max(by_size)
        grows = ratio(by_size[top].median, by_size[1000].median)
        emulator = ratio(by_size[top].aws, by_size[1000].aws)
        out.append(
            Figure(
                section,
                f"growth 1,000 -> {top:,} workers",
                f"{grows:.1f}x time for {top / 1000:.0f}x workers",
                "",
                None,
                f"linear would be {top / 1000:.0f}x; the emulator's AWS calls alone grew {emulator:.1f}x",
            )
        )
    if result.race is not None:
        race = result.race
        ticks = ", ".join(f"{job} {n}" for job, n in race.ticks.items())
        out.append(
            Figure(
                section,
                f"duplicate scheduled runs, {race.replicas} worker processes",
                str(race.duplicates),
                "0",
                race.duplicates == 0 and sum(race.ticks.values()) > 0,  # no tick at all proves nothing
                f"unique (job, tick) in job_runs over {race.seconds:.0f}s; ticks: {ticks}",
            )
        )
        missed = sum(race.missed.values())
        out.append(
            Figure(
                section,
                "ticks skipped between consecutive runs",
                str(missed),
                "0",
                missed == 0 and sum(race.ticks.values()) > 0,
                "consecutive ticks of each job in job_runs",
            )
        )
    for figure in out:
        raced = figure.name.startswith(("duplicate", "ticks skipped"))
        figure.setting = RACE_SETTING if raced else JOBS_SETTING
    return out
