import pytest

from cml_cloud_manager.errors import IllegalTransition
from cml_cloud_manager.labs.domain import check_lab_action
from cml_cloud_manager.workers.domain import WorkerStatus, check_action, check_transition


def test_observed_ec2_changes_are_legal() -> None:
    assert check_transition("running", "stopping") is WorkerStatus.STOPPING
    assert check_transition("stopped", "pending") is WorkerStatus.PENDING
    assert check_transition("unknown", "running") is WorkerStatus.RUNNING


@pytest.mark.parametrize(
    ("current", "new"), [("terminated", "running"), ("shutting-down", "running"), ("terminated", "stopped")]
)
def test_no_way_back_from_termination(current: str, new: str) -> None:
    with pytest.raises(IllegalTransition, match=f"from '{current}' to '{new}'"):
        check_transition(current, new)


def test_unknown_status_is_refused() -> None:
    with pytest.raises(IllegalTransition, match="not a worker status"):
        check_transition("running", "sleeping")


def test_actions_name_the_worker_and_allowed_states() -> None:
    check_action("start", "stopped", name="w1")
    with pytest.raises(IllegalTransition, match="Cannot start worker 'w1' while it is running") as info:
        check_action("start", "running", name="w1")
    assert info.value.status_code == 409


def test_lab_actions_follow_cml_rules() -> None:
    assert check_lab_action("start", "STOPPED", title="lab") == "STARTED"
    assert check_lab_action("delete", "DEFINED_ON_CORE", title="lab") is None
    with pytest.raises(IllegalTransition, match="Cannot wipe lab 'lab' while it is STARTED"):
        check_lab_action("wipe", "STARTED", title="lab")
