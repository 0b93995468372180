"""Parsing CML payloads into our types, and the license status mapping, without any HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cml_cloud_manager.cml import (
    LabDetails,
    LabState,
    LicenseStatus,
    Licensing,
    SystemStats,
    TelemetryEvent,
    license_status,
    parse_cml_datetime,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("registration", "authorization", "expires", "expected"),
    [
        ("COMPLETED", "IN_COMPLIANCE", NOW + timedelta(days=30), LicenseStatus.REGISTERED),
        ("COMPLETED", "IN_COMPLIANCE", NOW - timedelta(seconds=1), LicenseStatus.EXPIRED),
        ("COMPLETED", "AUTHORIZED_EXPIRED", None, LicenseStatus.EXPIRED),
        ("UNREGISTERED", "EVAL_EXPIRED", None, LicenseStatus.EXPIRED),
        ("COMPLETED", "OUT_OF_COMPLIANCE", None, LicenseStatus.INVALID),
        ("COMPLETED", "NOT_AUTHORIZED", None, LicenseStatus.INVALID),
        ("FAILED", "EVAL", None, LicenseStatus.INVALID),
        ("UNREGISTERED", "OUT_OF_COMPLIANCE", None, LicenseStatus.INVALID),
        ("UNREGISTERED", "EVAL", None, LicenseStatus.EVALUATION),
        ("IN_PROGRESS", "EVALUATION", None, LicenseStatus.EVALUATION),
        ("UNREGISTERED", "NOT_AUTHORIZED", None, LicenseStatus.UNREGISTERED),
        (None, None, None, LicenseStatus.UNREGISTERED),
        ("completed", "in_compliance", None, LicenseStatus.REGISTERED),
    ],
)
def test_license_status_mapping(
    registration: str | None, authorization: str | None, expires: datetime | None, expected: LicenseStatus
) -> None:
    assert license_status(registration, authorization, expires, NOW) is expected


@pytest.mark.parametrize(
    "raw", ["2025-06-01T12:00:00.000Z", "2025-06-01T12:00:00", "2025-06-01T14:00:00+02:00", " 2025-06-01T12:00:00Z"]
)
def test_cml_timestamps_become_aware_utc(raw: str) -> None:
    parsed = parse_cml_datetime(raw)

    assert parsed == NOW
    assert parsed.utcoffset() == timedelta(0)


def test_licensing_reads_failure_and_expiry() -> None:
    licensing = Licensing.from_api(
        {
            "registration": {
                "status": "COMPLETED",
                "expires": "2025-05-31T00:00:00+00:00",
                "register_time": {"failure": "Communication with Smart Software Manager failed."},
            },
            "authorization": {"status": "IN_COMPLIANCE", "expires": None},
            "product_license": {"active": "CML_Enterprise", "is_enterprise": True},
        },
        now=NOW,
    )

    assert licensing.status is LicenseStatus.EXPIRED
    assert licensing.last_failure == "Communication with Smart Software Manager failed."
    assert licensing.authorization_expires is None
    assert licensing.features == ()


def test_system_stats_tolerate_computes_still_registering() -> None:
    stats = SystemStats.from_api(
        {
            "all": {
                "cpu": {"count": 8, "percent": 12.5},
                "memory": {"used": 4, "free": 12, "total": 16},
                "disk": {"used": 1, "free": 3, "total": 4},
            },
            "computes": {
                "a": {"stats": {"dominfo": {"running_nodes": 3, "total_nodes": None, "allocated_cpus": 2}}},
                "b": {"stats": {"dominfo": {"running_nodes": None, "allocated_cpus": 0, "allocated_memory": 0}}},
            },
        }
    )

    assert (stats.compute_count, stats.running_nodes, stats.total_nodes, stats.allocated_cpus) == (2, 3, 0, 2)
    assert (stats.memory_percent, stats.disk_percent) == (25.0, 25.0)
    assert stats.controller_disk_total == 0


def test_lab_details_fall_back_to_owner_id_without_username() -> None:
    lab = LabDetails.from_api({"id": "x", "lab_title": "T", "state": "STOPPED", "owner": "owner-id"})

    assert (lab.owner, lab.owner_id, lab.state, lab.created) == ("owner-id", "owner-id", LabState.STOPPED, None)


def test_telemetry_event_data_is_read_only() -> None:
    event = TelemetryEvent.from_api(
        {"category": "stop_lab", "timestamp": "2025-06-01T12:00:00Z", "data": {"lab_id": "L", "user_id": "U"}}
    )

    assert (event.lab_id, event.user_id, event.timestamp) == ("L", "U", NOW)
    with pytest.raises(TypeError):
        event.data["lab_id"] = "other"  # type: ignore[index]
