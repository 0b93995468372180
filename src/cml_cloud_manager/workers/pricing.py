"""Rough on-demand Linux prices (USD per hour, us-east-1) for the instance types CML usually runs on.

An estimate for the fleet view, not a bill: unknown types count as unpriced rather than guessed.
"""

from __future__ import annotations

HOURLY_USD: dict[str, float] = {
    "c5.xlarge": 0.17,
    "c5.2xlarge": 0.34,
    "c5.4xlarge": 0.68,
    "c5.9xlarge": 1.53,
    "c5.metal": 4.08,
    "m5.xlarge": 0.192,
    "m5.2xlarge": 0.384,
    "m5.4xlarge": 0.768,
    "m5.8xlarge": 1.536,
    "m5zn.metal": 3.964,
    "m5.metal": 4.608,
    "c6i.2xlarge": 0.34,
    "c6i.4xlarge": 0.68,
    "m6i.2xlarge": 0.384,
    "m6i.4xlarge": 0.768,
    "t3.micro": 0.0104,
    "t3.large": 0.0832,
}


def hourly(instance_type: str) -> float | None:
    return HOURLY_USD.get(instance_type)
