"""Runtime-overridable settings: the keys an admin may set, with their types."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from ..errors import BadRequest

JOB_NAMES = ("worker-metrics", "labs-refresh", "auto-import", "idle-detection", "housekeeping")

OVERRIDABLE: dict[str, Any] = {
    **{f"jobs.{name}.enabled": bool for name in JOB_NAMES},
    **{f"jobs.{name}.interval_seconds": float for name in JOB_NAMES},
}


class SettingsUpdate(BaseModel):
    values: dict[str, Any] = Field(description="key -> new value; null removes the override")


def validate_changes(changes: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in changes.items():
        if key not in OVERRIDABLE:
            raise BadRequest(f"Unknown system setting '{key}'", known=sorted(OVERRIDABLE))
        if value is None:
            clean[key] = None
            continue
        try:
            clean[key] = TypeAdapter(OVERRIDABLE[key]).validate_python(value, strict=False)
        except ValidationError as exc:
            raise BadRequest(f"Bad value for '{key}': {exc.errors()[0]['msg']}") from None
        if key.endswith("interval_seconds") and clean[key] < 1:
            raise BadRequest(f"'{key}' must be at least 1 second")
    return clean
