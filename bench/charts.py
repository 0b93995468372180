"""PNG charts next to the results file (matplotlib, drawn off-screen)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: benchmarks run headless
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from .common import percentile
from .jobs import JobsResult
from .separation import Phase, SeparationResult
from .sse_fanout import SseResult

COLORS = {
    "all": "#d62728",
    "split": "#1f77b4",
    "api": "#1f77b4",
    "worker": "#ff7f0e",
    "loadgen": "#7f7f7f",
    "aws-emulator": "#2ca02c",
    "cml-simulator": "#9467bd",
    "postgres": "#8c564b",
    "redis": "#e377c2",
    "up": "#bcbd22",
    "other": "#000000",
}


def _rolling_p99(phase: Phase, window: float = 1.0) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    t = 0.0
    while t < phase.seconds:
        inside = [r[1] for r in phase.records if t <= r[0] < t + window and r[2] == 200]
        if inside:
            xs.append(t + window / 2)
            ys.append(percentile(inside, 0.99))
        t += window
    return xs, ys


JOB_COLORS = {"worker-metrics": "#ffbb78", "labs-refresh": "#98df8a", "idle-detection": "#c5b0d5"}


def _latency_panel(ax: Axes, phase: Phase) -> None:
    for run in phase.runs:
        start, end = max(0.0, run.start), min(phase.seconds, run.end if run.end is not None else phase.seconds)
        ax.axvspan(start, end, color=JOB_COLORS.get(run.job, "#c49c94"), alpha=0.5, lw=0)
        if end - start > 0.1 * phase.seconds:  # label only spans wide enough to hold it
            label = f"{run.job}: {run.outcome}"
            ax.text(start + 0.2, 0.97, label, transform=ax.get_xaxis_transform(), fontsize=7, va="top")
    ok = [r for r in phase.records if r[2] == 200]
    ax.scatter([r[0] for r in ok], [max(r[1], 0.1) for r in ok], s=2, alpha=0.35, color=COLORS[phase.mode], lw=0)
    ax.plot(*_rolling_p99(phase), color="black", lw=1.2, label="p99 per second")
    bad = [r for r in phase.records if r[2] != 200]
    if bad:
        ax.scatter([r[0] for r in bad], [max(r[1], 0.1) for r in bad], s=6, color="red", marker="x", label="errors")
    s = phase.summary()
    ax.set_title(f"{phase.label}: p50 {s.p50:.1f} ms, p99 {s.p99:.1f} ms", fontsize=9)
    ax.set_yscale("log")
    ax.set_xlim(0, phase.seconds)
    ax.set_ylabel("latency (ms)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper right", fontsize=7)


def _systems(result: SeparationResult) -> list[tuple[str, str]]:
    return [(key, mode) for key in result.plan.scenarios for mode in result.plan.modes]


def separation_latency(result: SeparationResult, path: Path) -> Path:
    systems, rates = _systems(result), result.plan.rates
    fig, axes = plt.subplots(
        len(systems), len(rates), figsize=(7 * len(rates), 3.2 * len(systems)), squeeze=False, sharey=True
    )
    for row, (key, mode) in enumerate(systems):
        for col, rate in enumerate(rates):
            phase = result.phase(key, mode, rate, True)
            if phase is not None:
                _latency_panel(axes[row][col], phase)
            axes[row][col].set_xlabel("seconds into the phase (shaded: job runs)")
    fig.suptitle(
        "API latency under open-loop load, defaults (token auth), all jobs on, worker-metrics every 10 s over "
        "1,000 workers (first round)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def separation_cpu(result: SeparationResult, path: Path) -> Path:
    systems = [(key, mode) for key, mode in _systems(result) if result.cpu_samples.get(f"{key} {mode}")]
    fig, axes = plt.subplots(len(systems), 1, figsize=(12, 3.2 * len(systems)), squeeze=False)
    for row, (key, mode) in enumerate(systems):
        ax = axes[row][0]
        samples = result.cpu_samples[f"{key} {mode}"]
        t0 = samples[0][0]
        groups = sorted({g for _, s in samples for g in s}, key=lambda g: list(COLORS).index(g) if g in COLORS else 99)
        for group in groups:
            base = group.removesuffix(" wait")  # run-queue wait of a process: dashed, in its colour
            ax.plot(
                [t - t0 for t, _ in samples],
                [s.get(group, 0.0) for _, s in samples],
                lw=1,
                label=group,
                color=COLORS.get(base),
                ls="--" if group != base else "-",
            )
        for phase in (p for p in result.phases if (p.scenario, p.mode) == (key, mode)):
            ax.axvspan(
                phase.start - t0,
                phase.start - t0 + phase.seconds,
                alpha=0.08,
                color="#ff7f0e" if phase.jobs else "#1f77b4",
                lw=0,
            )
            ax.text(
                phase.start - t0 + 0.5,
                0.98,
                f"{phase.rate}/s jobs {'on' if phase.jobs else 'off'}",
                transform=ax.get_xaxis_transform(),
                fontsize=7,
                va="top",
            )
        ax.set_title(f"({key}) {mode} mode: CPU per process (100% = one core)", fontsize=9)
        ax.set_ylabel("CPU %")
        ax.set_xlabel("seconds since the processes started")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def separation_summary(result: SeparationResult, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(max(10, len(result.phases) * 0.6), 4))
    phases = result.phases
    labels = [f"({p.scenario}) {p.mode}\n{p.rate}/s\njobs {'on' if p.jobs else 'off'}\nr{p.round}" for p in phases]
    xs = range(len(phases))
    for offset, name, color in ((-0.27, "p50", "#aec7e8"), (0, "p99", "#1f77b4"), (0.27, "p999", "#08306b")):
        values = [getattr(p.summary(), name) for p in phases]
        ax.bar([x + offset for x in xs], values, width=0.27, label=name.replace("p999", "p99.9"), color=color)
    ax.axhline(10, color="green", ls="--", lw=1, label="target p99 (a) split, 500/s, jobs on: 10 ms")
    ax.axhline(3, color="olive", ls=":", lw=1, label="target p99 (b) split, 500/s, jobs on: 3 ms")
    ax.set_xticks(list(xs), labels, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms)")
    ax.set_title("API latency per phase (same run)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y", which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sse_chart(result: SseResult, path: Path) -> Path:
    fig, (mem, lat) = plt.subplots(1, 2, figsize=(12, 4))
    if result.rss_steps:
        xs, ys = [c for c, _ in result.rss_steps], [r / 1024 for _, r in result.rss_steps]
        mem.plot(xs, ys, marker="o")
        mem.set_title(f"API RSS vs idle SSE clients: {result.kb_per_client:.1f} KB per client", fontsize=9)
        mem.set_xlabel("idle clients connected")
        mem.set_ylabel("RSS (MiB)")
        mem.grid(alpha=0.3)
    if result.latencies:
        ordered = sorted(result.latencies)
        lat.plot(ordered, [i / len(ordered) for i in range(len(ordered))])
        for value, name in ((20, "p50 target"), (100, "p99 target")):
            lat.axvline(value, color="green", ls="--", lw=1)
            lat.text(value, 0.02, name, fontsize=7, rotation=90)
        lat.set_xscale("log")
        lat.set_title(
            f"commit-to-client latency, {result.plan.clients:,} clients, {result.plan.rate:g} events/s", fontsize=9
        )
        lat.set_xlabel("latency (ms)")
        lat.set_ylabel("share of deliveries")
        lat.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def jobs_chart(result: JobsResult, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = sorted(result.sizes, key=lambda s: s.workers)
    ax.plot([s.workers for s in sizes], [s.median for s in sizes], marker="o", label="median duration")
    for s in sizes:
        ax.scatter([s.workers] * len(s.durations), s.durations, s=8, color="#7f7f7f")
    ax.axhline(10, color="green", ls="--", lw=1, label="target for 1,000 workers: 10 s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("simulated workers")
    ax.set_ylabel("worker-metrics run (s)")
    ax.set_title("worker-metrics duration vs fleet size", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
