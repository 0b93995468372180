"""Worker statuses and the one place their transitions are checked."""

from __future__ import annotations

import enum

from ..errors import IllegalTransition, one_of


class WorkerStatus(enum.StrEnum):
    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    SHUTTING_DOWN = "shutting-down"
    TERMINATED = "terminated"
    FAILED = "failed"
    UNKNOWN = "unknown"


class ServiceStatus(enum.StrEnum):
    UNAVAILABLE = "unavailable"
    STARTING = "starting"
    AVAILABLE = "available"
    ERROR = "error"


class LicenseStatus(enum.StrEnum):
    UNREGISTERED = "unregistered"
    REGISTERED = "registered"
    EVALUATION = "evaluation"
    EXPIRED = "expired"
    INVALID = "invalid"


S = WorkerStatus
_LIVE = {S.PENDING, S.STARTING, S.RUNNING, S.STOPPING, S.STOPPED}
# EC2 may move through states faster than we observe them, so observed changes between live states are legal;
# what is never legal is leaving `terminated`, or reviving a worker that is shutting down.
TRANSITIONS: dict[WorkerStatus, set[WorkerStatus]] = {
    S.UNKNOWN: set(S) - {S.UNKNOWN},
    S.PENDING: _LIVE | {S.SHUTTING_DOWN, S.TERMINATED, S.FAILED, S.UNKNOWN},
    S.STARTING: _LIVE | {S.SHUTTING_DOWN, S.TERMINATED, S.FAILED, S.UNKNOWN},
    S.RUNNING: _LIVE | {S.SHUTTING_DOWN, S.TERMINATED, S.FAILED, S.UNKNOWN},
    S.STOPPING: _LIVE | {S.SHUTTING_DOWN, S.TERMINATED, S.FAILED, S.UNKNOWN},
    S.STOPPED: _LIVE | {S.SHUTTING_DOWN, S.TERMINATED, S.FAILED, S.UNKNOWN},
    S.SHUTTING_DOWN: {S.TERMINATED, S.UNKNOWN},
    S.FAILED: {S.SHUTTING_DOWN, S.TERMINATED, S.PENDING, S.RUNNING, S.STOPPED, S.UNKNOWN},
    S.TERMINATED: set(),
}
for _state in S:
    TRANSITIONS[_state].discard(_state)

# What an operator may ask for, from which statuses.
ACTIONS: dict[str, set[WorkerStatus]] = {
    "start": {S.STOPPED},
    "stop": {S.RUNNING, S.PENDING, S.STARTING},
    "terminate": set(S) - {S.TERMINATED, S.SHUTTING_DOWN},
    "refresh": set(S) - {S.TERMINATED},
    "operate-labs": {S.RUNNING},
    "tags": _LIVE,
    "monitoring": _LIVE,
    "license": {S.RUNNING},
}


def check_transition(current: str, new: str) -> WorkerStatus:
    """Return the new status if moving there is legal; raise IllegalTransition otherwise."""
    try:
        target = WorkerStatus(new)
    except ValueError:
        raise IllegalTransition(f"'{new}' is not a worker status") from None
    source = WorkerStatus(current)
    if target != source and target not in TRANSITIONS[source]:
        raise IllegalTransition(f"A worker cannot go from '{source}' to '{target}'", current=source, target=target)
    return target


# How each action reads in a sentence ("Cannot {phrase} worker 'x' while it is stopped").
PHRASES: dict[str, str] = {
    "start": "start",
    "stop": "stop",
    "terminate": "terminate",
    "refresh": "refresh",
    "operate-labs": "operate labs on",
    "tags": "change the tags of",
    "monitoring": "change detailed monitoring of",
    "license": "change the license of",
}


def spoken(status: str) -> str:
    """A status as a sentence says it: `shutting-down` is "shutting down"."""
    return status.replace("-", " ")


def check_action(action: str, current: str, *, name: str) -> None:
    allowed = ACTIONS[action]
    if WorkerStatus(current) in allowed:
        return
    message = f"Cannot {PHRASES[action]} worker '{name}' while it is {spoken(current)}"
    # Name the statuses that would do only when they are the short list; "while it is terminated" says enough
    # when nearly every status would.
    if len(allowed) <= len(WorkerStatus) - len(allowed):
        message += f": it must be {one_of([spoken(s) for s in WorkerStatus if s in allowed])}"
    raise IllegalTransition(f"{message}.", action=action, current=current)
