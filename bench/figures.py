"""Turning each section's measurements into table rows: value, target, met, and what it was compared against."""

from __future__ import annotations

import statistics

from .jobs import JobsResult
from .separation import SeparationResult
from .sse_fanout import SseResult
from .stats import Figure, ms, ratio

# The seed guide's claim: jobs in the API process vs moved out of it.
CLAIM = {"all": (50.0, 500.0), "split": (20.0, 100.0)}
SPLIT_P99_TARGET_MS = 10.0
SPLIT_JOBS_OVER_IDLE = 1.20
TARGET_RATE = 500


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def separation_figures(result: SeparationResult) -> list[Figure]:
    """Latencies are medians over the rounds; a ratio is taken within each round (same processes, minutes
    apart) and its median reported."""
    out: list[Figure] = []
    section = "Separation"
    rounds = f"median of {result.plan.rounds} rounds"
    for rate in result.plan.rates:
        both = {mode: result.rounds(mode, rate, True) for mode in result.plan.modes}
        for mode, phases in both.items():
            if not phases:
                continue
            p50 = _median([p.summary().p50 for p in phases])
            p99 = _median([p.summary().p99 for p in phases])
            errors = sum(p.summary().errors for p in phases)
            claim_p50, claim_p99 = CLAIM[mode]
            out.append(
                Figure(
                    section,
                    f"{mode} mode, {rate} req/s, worker-metrics every 10 s: p50 / p99",
                    f"{ms(p50)} / {ms(p99)} ({errors} errors)",
                    f"seed claim {claim_p50:.0f} / {claim_p99:.0f} ms",
                    p50 <= claim_p50 and p99 <= claim_p99 and errors == 0,
                    f"the seed guide's figures for this mode; {rounds}",
                )
            )
        combined, split = both.get("all", []), both.get("split", [])
        if combined and split:
            pairs = [(a.summary(), b.summary()) for a, b in zip(combined, split, strict=False)]
            out.append(
                Figure(
                    section,
                    f"all / split at {rate} req/s with jobs: p99 ratio",
                    f"{_median([ratio(a.p99, b.p99) for a, b in pairs]):.1f}x "
                    f"(p50 {_median([ratio(a.p50, b.p50) for a, b in pairs]):.1f}x)",
                    "",
                    None,
                    f"split mode, same load, same round; {rounds}",
                )
            )
        idle = result.rounds("split", rate, False)
        if split and idle:
            pairs_p99 = [(j.summary().p99, i.summary().p99) for j, i in zip(split, idle, strict=False)]
            over = _median([ratio(j, i) for j, i in pairs_p99])
            each = ", ".join(f"{ratio(j, i):.2f}" for j, i in pairs_p99)
            target = rate == TARGET_RATE
            out.append(
                Figure(
                    section,
                    f"split mode, {rate} req/s: p99 with jobs / p99 idle",
                    f"{over:.2f} ({ms(_median([j for j, _ in pairs_p99]))} vs "
                    f"{ms(_median([i for _, i in pairs_p99]))}; rounds {each})",
                    f"<= {SPLIT_JOBS_OVER_IDLE:.2f}" if target else "",
                    over <= SPLIT_JOBS_OVER_IDLE if target else None,
                    f"split mode idle (jobs off), same round; {rounds}",
                )
            )
        if split and rate == TARGET_RATE:
            p99 = _median([p.summary().p99 for p in split])
            errors = sum(p.summary().errors for p in split)
            out.append(
                Figure(
                    section,
                    f"split mode, {rate} req/s with jobs: p99",
                    ms(p99),
                    f"<= {SPLIT_P99_TARGET_MS:.0f} ms",
                    p99 <= SPLIT_P99_TARGET_MS and errors == 0,
                    f"fixed target; {rounds}",
                )
            )
    base = result.rounds("split", min(result.plan.rates), False)
    cpu = [p.cpu["api"] * 10 / p.rate for p in base if p.cpu.get("api")]  # percent of one core -> ms per request
    if cpu:
        per_request = _median(cpu)
        out.append(
            Figure(
                section,
                f"split mode API CPU per request ({base[0].rate} req/s, idle)",
                f"{per_request:.2f} ms: one core serves at most ~{1000 / per_request:,.0f} req/s of this mix",
                "",
                None,
                f"the API's CPU over the phase divided by its requests ({rounds}); a rate above that capacity queues",
            )
        )
    other = max((p.cpu.get("other", 0.0) for p in result.phases), default=0.0)
    out.append(
        Figure(
            section,
            "CPU used by processes the benchmark did not start, worst phase",
            f"{other:.0f}% of one core",
            "",
            None,
            "high values mean the machine was shared during the run and latencies are pessimistic",
        )
    )
    lag = max((p.lag().p99 for p in result.phases), default=0.0)
    out.append(
        Figure(
            section,
            "load generator lag, worst phase p99",
            ms(lag),
            "",
            None,
            "its own schedule: how late it sent (must stay far below the latencies)",
        )
    )
    return out


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
                race.duplicates == 0,
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
                missed == 0,
                "consecutive ticks of each job in job_runs",
            )
        )
    return out
