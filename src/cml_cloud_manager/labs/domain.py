"""Lab states as CML reports them, and which operations each allows (checked here, before calling CML)."""

from __future__ import annotations

import enum

from ..errors import IllegalTransition, one_of


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
    # CML removes only a lab that is stopped and wiped.
    "delete": ({L.DEFINED_ON_CORE}, None),
}
# What to do first, where the state alone does not say it.
FIRST = {"delete": "Stop and wipe it first."}


def spoken(state: str) -> str:
    """CML's `DEFINED_ON_CORE` as a sentence says it: "defined on core"."""
    return state.replace("_", " ").lower()


def check_lab_action(action: str, current: str, *, title: str) -> LabState | None:
    """Return the state the lab reaches (None when it is deleted); raise IllegalTransition if not allowed."""
    allowed, target = ACTIONS[action]
    try:
        state = LabState(current)
    except ValueError:
        state = None
    if state not in allowed:
        raise IllegalTransition(
            f"Cannot {action} lab '{title}' while it is {spoken(current)}: "
            f"it must be {one_of([spoken(s) for s in LabState if s in allowed])}."
            + (f" {FIRST[action]}" if action in FIRST else ""),
            action=action,
            current=current,
        )
    return target
