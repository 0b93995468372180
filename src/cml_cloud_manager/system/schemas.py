"""Runtime-overridable settings (the keys an admin may set, with their types), and the run-now command."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from ..errors import BadRequest
from ..jobs.context import CommandPayload, Report
from ..jobs.scheduler import Override

JOB_NAMES = ("worker-metrics", "labs-refresh", "auto-import", "idle-detection", "housekeeping")

OVERRIDABLE: dict[str, type[Override]] = {
    **{f"jobs.{name}.enabled": bool for name in JOB_NAMES},
    **{f"jobs.{name}.interval_seconds": float for name in JOB_NAMES},
}


# The overrides in force, one optional property per key (named as set, e.g. `jobs.auto-import.enabled`); a key
# without an override is absent.
_OVERRIDES: dict[str, Any] = {
    key.replace(".", "_").replace("-", "_"): (kind, Field(None, alias=key)) for key, kind in OVERRIDABLE.items()
}
RuntimeSettings: type[BaseModel] = create_model(
    "RuntimeSettings", __config__=ConfigDict(populate_by_name=True), **_OVERRIDES
)


class PublicConfig(BaseModel):
    """Settings the UI needs to explain what it shows; no secrets."""

    idle_timeout_minutes: float
    idle_snooze_minutes: float
    aws_regions: list[str]
    cml_instance_type: str
    auth_mode: Literal["token", "oidc", "none"]


class SettingsUpdate(BaseModel):
    values: dict[str, Any] = Field(description="key -> new value; null removes the override")


def validate_changes(changes: dict[str, Any]) -> dict[str, Override | None]:
    """Each value as its key's type (None removes the override), or BadRequest naming the key."""
    clean: dict[str, Override | None] = {}
    for key, value in changes.items():
        if key not in OVERRIDABLE:
            raise BadRequest(f"Unknown system setting '{key}'", known=sorted(OVERRIDABLE))
        if value is None:
            clean[key] = None
            continue
        try:
            typed: Override = TypeAdapter(OVERRIDABLE[key]).validate_python(value, strict=False)
        except ValidationError as exc:
            raise BadRequest(f"Bad value for '{key}': {exc.errors()[0]['msg']}") from None
        if key.endswith("interval_seconds") and typed < 1:
            raise BadRequest(f"'{key}' must be at least 1 second")
        clean[key] = typed
    return clean


class RunJob(CommandPayload):
    """Run a scheduled job now, on whichever worker claims the command."""

    command: ClassVar[str] = "system.run-job"

    job: str = Field(min_length=1)


class Pruned(Report):
    """What housekeeping deleted, past retention."""

    events_pruned: int
    job_runs_pruned: int
    commands_pruned: int
    metric_samples_pruned: int
    processes_pruned: int
    sessions_pruned: int
