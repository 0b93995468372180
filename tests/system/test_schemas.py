"""Which runtime overrides an admin may set, and how a bad one is refused before anything is stored."""

from __future__ import annotations

import pytest

from cml_cloud_manager.apps import registry
from cml_cloud_manager.errors import BadRequest
from cml_cloud_manager.system.schemas import JOB_NAMES, OVERRIDABLE, validate_changes


def test_every_scheduled_job_can_be_switched_and_paced_and_nothing_else() -> None:
    names = {job.name for job in registry.jobs()}
    assert set(JOB_NAMES) == names
    assert set(OVERRIDABLE) == {f"jobs.{n}.{s}" for n in names for s in ("enabled", "interval_seconds")}


def test_values_are_read_as_their_type_and_null_removes_an_override() -> None:
    changes = {
        "jobs.housekeeping.enabled": "false",
        "jobs.labs-refresh.enabled": True,
        "jobs.worker-metrics.interval_seconds": "30",
        "jobs.auto-import.interval_seconds": 1,
        "jobs.idle-detection.interval_seconds": None,
    }
    assert validate_changes(changes) == {
        "jobs.housekeeping.enabled": False,
        "jobs.labs-refresh.enabled": True,
        "jobs.worker-metrics.interval_seconds": 30.0,
        "jobs.auto-import.interval_seconds": 1.0,
        "jobs.idle-detection.interval_seconds": None,
    }
    assert validate_changes({}) == {}


def test_an_unknown_key_is_named_with_the_keys_there_are() -> None:
    with pytest.raises(BadRequest) as info:
        validate_changes({"jobs.housekeeping.enabled": True, "jobs.nope.enabled": True})
    assert info.value.message == "Unknown system setting 'jobs.nope.enabled'"
    assert info.value.detail["known"] == sorted(OVERRIDABLE)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("jobs.housekeeping.enabled", "perhaps", "Bad value for 'jobs.housekeeping.enabled': "),
        ("jobs.housekeeping.interval_seconds", "soon", "Bad value for 'jobs.housekeeping.interval_seconds': "),
        ("jobs.housekeeping.interval_seconds", [60], "Bad value for 'jobs.housekeeping.interval_seconds': "),
        ("jobs.housekeeping.interval_seconds", 0.999, "'jobs.housekeeping.interval_seconds' must be at least 1 second"),
        ("jobs.housekeeping.interval_seconds", -5, "'jobs.housekeeping.interval_seconds' must be at least 1 second"),
    ],
)
def test_a_bad_value_is_refused_naming_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        validate_changes({key: value})
    assert info.value.status_code == 400
    assert info.value.message.startswith(message)
