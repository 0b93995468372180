"""Lab states as CML reports them, and which operations each allows (checked here, before calling CML)."""

from __future__ import annotations

import enum

from ..errors import IllegalTransition


class LabState(enum.StrEnum):
    DEFINED_ON_CORE = "DEFINED_ON_CORE"
    QUEUED = "QUEUED"
    STARTED = "STARTED"
    BOOTED = "BOOTED"
    STOPPED = "STOPPED"


L = LabState
ACTIONS: dict[str, tuple[set[LabState], LabState | None]] = {
    "start": ({L.DEFINED_ON_CORE, L.STOPPED}, L.STARTED),
    "stop": ({L.STARTED, L.BOOTED, L.QUEUED}, L.STOPPED),
    "wipe": ({L.STOPPED}, L.DEFINED_ON_CORE),
    "delete": ({L.STOPPED, L.DEFINED_ON_CORE}, None),
}


def check_lab_action(action: str, current: str, *, title: str) -> LabState | None:
    """Return the state the lab reaches (None when it is deleted); raise IllegalTransition if not allowed."""
    allowed, target = ACTIONS[action]
    try:
        state = LabState(current)
    except ValueError:
        state = None
    if state not in allowed:
        raise IllegalTransition(
            f"Cannot {action} lab '{title}' while it is {current} (allowed from: {', '.join(sorted(allowed))})",
            action=action,
            current=current,
        )
    return target
