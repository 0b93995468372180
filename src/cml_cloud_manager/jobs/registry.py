"""Every job and command type, by name. Each function lives beside its domain code."""

from __future__ import annotations

from ..system.tasks import housekeeping
from .context import CommandType, Job


def jobs() -> list[Job]:
    return [
        Job("housekeeping", housekeeping, "Prune old events, job runs, commands and metric samples"),
    ]


def commands() -> list[CommandType]:
    return []
