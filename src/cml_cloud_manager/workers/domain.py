"""Worker statuses and the one place their transitions are checked."""

from __future__ import annotations

import enum

from ..errors import IllegalTransition


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


def check_action(action: str, current: str, *, name: str) -> None:
    if WorkerStatus(current) not in ACTIONS[action]:
        allowed = ", ".join(sorted(ACTIONS[action])) or "no status"
        raise IllegalTransition(
            f"Cannot {action} worker '{name}' while it is {current} (allowed from: {allowed})",
            action=action,
            current=current,
        )
