"""Which lab operations each CML lab state allows, checked before CML is asked, in words a person reads."""

from __future__ import annotations

import pytest

from cml_cloud_manager.errors import IllegalTransition
from cml_cloud_manager.labs.domain import ACTIONS, LabState, check_lab_action, spoken

ALLOWED = {
    ("start", LabState.DEFINED_ON_CORE): LabState.STARTED,
    ("start", LabState.STOPPED): LabState.STARTED,
    ("stop", LabState.QUEUED): LabState.STOPPED,
    ("stop", LabState.STARTED): LabState.STOPPED,
    ("stop", LabState.BOOTED): LabState.STOPPED,
    ("wipe", LabState.STOPPED): LabState.DEFINED_ON_CORE,
    ("delete", LabState.DEFINED_ON_CORE): None,
}


def test_lab_actions_follow_cml_rules() -> None:
    assert check_lab_action("start", "STOPPED", title="lab") == "STARTED"
    assert check_lab_action("delete", "DEFINED_ON_CORE", title="lab") is None
    with pytest.raises(IllegalTransition) as info:
        check_lab_action("wipe", "STARTED", title="lab")
    assert info.value.message == "Cannot wipe lab 'lab' while it is started: it must be stopped."
    with pytest.raises(IllegalTransition) as info:
        check_lab_action("start", "BOOTED", title="lab")
    assert info.value.message == "Cannot start lab 'lab' while it is booted: it must be defined on core or stopped."


@pytest.mark.parametrize("action", sorted(ACTIONS))
@pytest.mark.parametrize("state", list(LabState))
def test_every_action_in_every_state(action: str, state: LabState) -> None:
    if (action, state) in ALLOWED:
        assert check_lab_action(action, state.value, title="OSPF") == ALLOWED[action, state]
        return
    with pytest.raises(IllegalTransition) as info:
        check_lab_action(action, state.value, title="OSPF")
    assert info.value.status_code == 409
    assert info.value.message.startswith(f"Cannot {action} lab 'OSPF' while it is {spoken(state)}: it must be ")


def test_a_state_cml_may_add_later_is_refused_by_name_not_with_a_crash() -> None:
    with pytest.raises(IllegalTransition) as info:
        check_lab_action("start", "MIGRATING", title="OSPF")
    assert info.value.message == "Cannot start lab 'OSPF' while it is migrating: it must be defined on core or stopped."
