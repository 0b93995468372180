import re

import pytest

from cml_cloud_manager.errors import IllegalTransition
from cml_cloud_manager.workers.domain import ACTIONS, WorkerStatus, check_action, check_transition


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


@pytest.mark.parametrize(
    ("action", "current", "message"),
    [
        ("start", "running", "Cannot start worker 'w1' while it is running: it must be stopped."),
        ("stop", "stopped", "Cannot stop worker 'w1' while it is stopped: it must be pending, starting or running."),
        ("operate-labs", "stopped", "Cannot operate labs on worker 'w1' while it is stopped: it must be running."),
        ("license", "pending", "Cannot change the license of worker 'w1' while it is pending: it must be running."),
        # When nearly every status would do, the one it is in says enough.
        ("terminate", "shutting-down", "Cannot terminate worker 'w1' while it is shutting down."),
        ("refresh", "terminated", "Cannot refresh worker 'w1' while it is terminated."),
        ("tags", "failed", "Cannot change the tags of worker 'w1' while it is failed."),
        ("monitoring", "terminated", "Cannot change detailed monitoring of worker 'w1' while it is terminated."),
    ],
)
def test_refused_actions_read_as_a_person_writes(action: str, current: str, message: str) -> None:
    with pytest.raises(IllegalTransition) as info:
        check_action(action, current, name="w1")
    assert info.value.message == message


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_every_action_has_words_not_its_identifier(action: str) -> None:
    refused_in = next(s for s in WorkerStatus if s not in ACTIONS[action])
    with pytest.raises(IllegalTransition) as info:
        check_action(action, refused_in, name="w1")
    assert re.fullmatch(r"Cannot [a-z ]+ worker 'w1' while it is [a-z ]+(: it must be [a-z ,]+)?\.", info.value.message)
