"""The idle-detection rules on their own: which telemetry counts as a person's activity (`relevant`), the moment
idleness is measured from (`idle_since`), and when a worker is stopped (`should_stop`), at their edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import pytest

from cml_cloud_manager.activity.tasks import RELEVANT, idle_since, relevant, should_stop
from cml_cloud_manager.cml.types import TelemetryEvent
from cml_cloud_manager.config import Settings, SettingsError, load_settings
from cml_cloud_manager.storage.models import WorkerRow
from cml_cloud_manager.workers import service as workers
from cml_cloud_manager.workers.domain import WorkerStatus

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
TIMEOUT = timedelta(minutes=60)
SNOOZE = timedelta(minutes=30)
EPSILON = timedelta(microseconds=1)
ADMIN = "00000000-0000-4000-a000-000000000000"


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(
        database_url="sqlite+aiosqlite:///:memory:",
        idle_timeout_minutes=TIMEOUT.total_seconds() / 60,
        idle_snooze_minutes=SNOOZE.total_seconds() / 60,
    )


def worker(**fields: Any) -> WorkerRow:
    """A running worker with idle detection on, launched long ago and never used unless `fields` say so."""
    values: dict[str, Any] = {
        "name": "w1",
        "aws_region": "us-east-1",
        "status": WorkerStatus.RUNNING,
        "idle_detection_enabled": True,
        "launched_at": NOW - timedelta(days=1),
        "last_activity_at": None,
        "last_resumed_at": None,
        "snoozed_until": None,
    }
    return workers.create_row(**(values | fields))


def event(category: str, user_id: str | None = None, **data: Any) -> TelemetryEvent:
    return TelemetryEvent(
        category=category, timestamp=NOW, user_id=user_id, lab_id=None, data=MappingProxyType(dict(data))
    )


# --- relevant --------------------------------------------------------------------------------------------


def test_only_what_a_person_does_counts() -> None:
    noise = [event(c) for c in ("system_stats", "running_nodes", "license_status", "node_console")]
    people = [event(c, "u1") for c in sorted(RELEVANT)]
    assert relevant(noise + people, "") == people
    assert relevant(noise, "") == []


def test_the_excluded_users_pattern_is_searched_in_the_user_id_username_and_user() -> None:
    by_id, by_username, by_user = (
        event("start_lab", "svc-robot-1"),
        event("start_lab", None, username="svc-robot-2"),
        event("stop_lab", None, user="svc-robot-3"),
    )
    student = event("start_lab", "student1", username="student1")
    # `search`, not `match`: the pattern may match anywhere unless it anchors itself.
    assert relevant([by_id, by_username, by_user, student], "robot") == [student]
    assert relevant([by_id, by_username, by_user, student], "^robot") == [by_id, by_username, by_user, student]


def test_one_excluded_name_excludes_the_event_whatever_the_other_fields_say() -> None:
    mixed = event("start_lab", "student1", username="svc-robot")
    assert relevant([mixed], "^svc-") == []


def test_no_pattern_excludes_nobody_and_values_that_are_not_text_are_ignored() -> None:
    admin = event("user_activity", ADMIN)
    odd = event("user_activity", None, username=42, user=None)
    assert relevant([admin, odd], "") == [admin, odd]
    # Only text is matched: an event naming nobody in text is kept even by a pattern that matches anything.
    assert relevant([odd], ".*") == [odd]
    assert relevant([event("user_activity", "x")], ".*") == []


def test_the_default_pattern_excludes_our_own_admin_operations_only(settings: Settings) -> None:
    ours = event("start_lab", ADMIN)
    theirs = event("start_lab", "a" + ADMIN[1:])  # one character off
    assert relevant([ours, theirs], settings.idle_excluded_users) == [theirs]


def test_a_bad_pattern_is_refused_at_start() -> None:
    with pytest.raises(SettingsError, match="IDLE_EXCLUDED_USERS: not a valid regular expression"):
        load_settings(database_url="sqlite+aiosqlite:///:memory:", idle_excluded_users="(unclosed")


# --- idle_since ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("activity", "resumed", "launched", "expected"),
    [
        (None, None, None, None),
        (None, None, NOW - TIMEOUT, NOW - TIMEOUT),
        (NOW - timedelta(minutes=5), None, NOW - TIMEOUT, NOW - timedelta(minutes=5)),
        (NOW - timedelta(minutes=50), NOW - timedelta(minutes=10), NOW - TIMEOUT, NOW - timedelta(minutes=10)),
        # A launch after the last activity (the instance was replaced) restarts the clock too.
        (NOW - timedelta(days=2), None, NOW - timedelta(minutes=1), NOW - timedelta(minutes=1)),
    ],
)
def test_idleness_is_measured_from_the_latest_of_activity_resume_and_launch(
    activity: datetime | None, resumed: datetime | None, launched: datetime | None, expected: datetime | None
) -> None:
    row = worker(last_activity_at=activity, last_resumed_at=resumed, launched_at=launched)
    assert idle_since(row) == expected


# --- should_stop: the clock ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("idle_for", "stops"),
    [
        (TIMEOUT - EPSILON, False),
        (TIMEOUT, True),  # exactly at the timeout: stopped
        (TIMEOUT + EPSILON, True),
        (timedelta(0), False),
    ],
)
def test_a_worker_is_stopped_from_the_moment_its_idle_time_reaches_the_timeout(
    settings: Settings, idle_for: timedelta, stops: bool
) -> None:
    assert should_stop(worker(last_activity_at=NOW - idle_for), settings, NOW) is stops
    assert should_stop(worker(launched_at=NOW - idle_for), settings, NOW) is stops


def test_activity_in_the_future_of_the_check_keeps_the_worker(settings: Settings) -> None:
    """A CML clock ahead of ours gives events after `now`: never a reason to stop."""
    assert not should_stop(worker(last_activity_at=NOW + timedelta(minutes=5)), settings, NOW)


def test_a_worker_with_no_clock_at_all_is_never_stopped(settings: Settings) -> None:
    assert not should_stop(worker(launched_at=None), settings, NOW + timedelta(days=365))


# --- should_stop: snooze, resume grace, opt-out, status ---------------------------------------------------


@pytest.mark.parametrize(
    ("snoozed_until", "stops"),
    [
        (NOW + EPSILON, False),  # still snoozed
        (NOW, True),  # the snooze ends at that instant: the usual rules apply again
        (NOW - EPSILON, True),
        (None, True),
    ],
)
def test_a_snooze_holds_until_its_end(settings: Settings, snoozed_until: datetime | None, stops: bool) -> None:
    assert should_stop(worker(snoozed_until=snoozed_until), settings, NOW) is stops


def test_a_snooze_does_not_make_an_active_worker_stoppable(settings: Settings) -> None:
    active = worker(last_activity_at=NOW - timedelta(minutes=1), snoozed_until=NOW - timedelta(hours=1))
    assert not should_stop(active, settings, NOW)


@pytest.mark.parametrize(
    ("resumed_ago", "stops"),
    [
        (SNOOZE - EPSILON, False),  # inside the grace after a resume
        (SNOOZE, False),  # grace over, but the resume itself restarted the idle clock (30 of 60 minutes)
        (TIMEOUT - EPSILON, False),
        (TIMEOUT, True),
    ],
)
def test_a_resume_restarts_the_clock_with_a_grace_period(
    settings: Settings, resumed_ago: timedelta, stops: bool
) -> None:
    assert should_stop(worker(last_resumed_at=NOW - resumed_ago), settings, NOW) is stops


def test_the_resume_grace_holds_even_when_it_outlasts_the_timeout() -> None:
    long_grace = load_settings(
        database_url="sqlite+aiosqlite:///:memory:", idle_timeout_minutes=10, idle_snooze_minutes=60
    )
    resumed = worker(last_resumed_at=NOW - timedelta(minutes=30))  # idle for 30 > 10 minutes, but in the grace
    assert not should_stop(resumed, long_grace, NOW)
    assert should_stop(worker(last_resumed_at=NOW - timedelta(minutes=60)), long_grace, NOW)


def test_no_grace_at_all_when_the_snooze_setting_is_zero() -> None:
    no_grace = load_settings(
        database_url="sqlite+aiosqlite:///:memory:", idle_timeout_minutes=10, idle_snooze_minutes=0
    )
    assert should_stop(worker(last_resumed_at=NOW - timedelta(minutes=10)), no_grace, NOW)


def test_an_opted_out_worker_is_never_stopped(settings: Settings) -> None:
    assert should_stop(worker(), settings, NOW)
    assert not should_stop(worker(idle_detection_enabled=False), settings, NOW)
    assert not should_stop(worker(idle_detection_enabled=False), settings, NOW + timedelta(days=365))


@pytest.mark.parametrize("status", sorted(set(WorkerStatus) - {WorkerStatus.RUNNING}))
def test_only_a_running_worker_is_stopped(settings: Settings, status: WorkerStatus) -> None:
    assert not should_stop(worker(status=status), settings, NOW)
