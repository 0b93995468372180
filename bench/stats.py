"""What every section reports: figures (value vs target) and latency summaries."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .common import cores, percentile


@dataclass
class Figure:
    """One line of the results table. `compared` says what the value was measured against (same run)."""

    section: str
    name: str
    value: str
    target: str = ""
    met: bool | None = None  # None: no target, reported for context
    compared: str = ""
    setting: str = ""  # the scenario and settings it was measured with

    def line(self) -> str:
        verdict = "" if self.met is None else ("meets" if self.met else "MISSES")
        target = f"; target {self.target}: {verdict}" if self.target else ""
        against = f" [vs {self.compared}]" if self.compared else ""
        setting = f"{self.setting}: " if self.setting else ""
        return f"{setting}{self.name}: {self.value}{target}{against} ({cores()} cores)"


def announce(figure: Figure) -> Figure:
    """Print a figure as soon as it is known, so a long run shows progress."""
    print(f"  -> {figure.line()}", flush=True)
    return figure


@dataclass
class Summary:
    count: int
    errors: int
    p50: float
    p90: float
    p99: float
    p999: float
    max: float

    @classmethod
    def of(cls, latencies_ms: list[float], errors: int = 0) -> Summary:
        return cls(
            count=len(latencies_ms),
            errors=errors,
            p50=percentile(latencies_ms, 0.5),
            p90=percentile(latencies_ms, 0.9),
            p99=percentile(latencies_ms, 0.99),
            p999=percentile(latencies_ms, 0.999),
            max=max(latencies_ms) if latencies_ms else math.nan,
        )

    def text(self) -> str:
        return f"p50 {ms(self.p50)}, p90 {ms(self.p90)}, p99 {ms(self.p99)}, p99.9 {ms(self.p999)}, max {ms(self.max)}"


def ms(value: float) -> str:
    """Milliseconds with sensible precision: 0.84 ms, 12.3 ms, 1,234 ms."""
    if math.isnan(value):
        return "n/a"
    if value < 10:
        return f"{value:.2f} ms"
    if value < 100:
        return f"{value:.1f} ms"
    return f"{value:,.0f} ms"


def ratio(a: float, b: float) -> float:
    return a / b if b else math.inf
