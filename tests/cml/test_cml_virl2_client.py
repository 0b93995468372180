"""Cisco's own client library, unchanged, drives a simulated host: that keeps the simulator honest about CML.

The client waits for convergence by default, caches element states for a second and joins "api/v0/" onto the
base URL; the simulator has to meet all three as a real controller does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
import virl2_client
from virl2_client.exceptions import APIError

from cml_cloud_manager.cml.simulator import Simulator


@pytest.fixture
def client(base_url: str, sim: Simulator) -> Iterator[virl2_client.ClientLibrary]:
    # `convergence_wait_time` is the client's own knob; 0.1 s instead of 5 s keeps the test short.
    library = virl2_client.ClientLibrary(
        f"{base_url}/",
        sim.username,
        sim.password,
        allow_http=True,
        raise_for_auth_failure=True,
        convergence_wait_time=0.1,
    )
    yield library
    library.logout()


def test_virl2_client_logs_in_and_lists_labs(client: virl2_client.ClientLibrary, sim: Simulator, host_key: str) -> None:
    labs = client.all_labs(show_all=True)

    host = sim.host(host_key)
    assert host.auth_count == 1
    assert sorted(lab.id for lab in labs) == sorted(host.labs)
    for lab in labs:
        seeded = host.labs[lab.id]
        assert lab.title == seeded.title
        assert lab.owner == seeded.owner.username
        assert lab.state() == seeded.state
        assert len(lab.nodes()) == len(seeded.nodes)
        assert len(lab.links()) == len(seeded.links)
    assert client.logout() is True
    assert host.tokens == {}


def test_virl2_client_reports_rejected_credentials(base_url: str) -> None:
    with pytest.raises(virl2_client.exceptions.InitializationError, match="check your username and password"):
        virl2_client.ClientLibrary(
            f"{base_url}/",
            "admin",
            "not-the-password",
            allow_http=True,
            ssl_verify=False,
            raise_for_auth_failure=True,
        )


def test_a_labs_whole_life_through_virl2_client(
    client: virl2_client.ClientLibrary, sim: Simulator, host_key: str
) -> None:
    host = sim.host(host_key)
    lab = client.create_lab("Whole life", description="built by virl2-client")
    # Every call below waits for convergence where the client does by default (create, link, start...).
    r1 = lab.create_node("r1", "iosv", 0, 0)
    r2 = lab.create_node("r2", "iosv", 200, 0, populate_interfaces=True)
    switch = lab.create_node("sw", "unmanaged_switch", 100, 150)
    # r1 has no interfaces yet, so the client creates one (POST interfaces) before linking.
    core_link = lab.connect_two_nodes(r1, r2)
    access_link = lab.connect_two_nodes(r2, switch)
    r1.label, r1.ram = "core", 1024  # node PATCH, while it may still change its hardware

    simulated = host.labs[lab.id]
    assert sorted(n.label for n in simulated.nodes.values()) == ["core", "r2", "sw"]
    assert simulated.nodes[r1.id].ram == 1024
    assert {(link.node_a, link.node_b) for link in simulated.links.values()} == {(r1.id, r2.id), (r2.id, switch.id)}
    assert core_link.interface_a.node is r1 and core_link.interface_a.label == "GigabitEthernet0/0"
    assert core_link.interface_b.physical  # r2's Loopback0 cannot be linked; which port is the client's choice

    lab.start()
    assert lab.state() == "STARTED"
    assert {n.label: n.state for n in lab.nodes()} == {"core": "BOOTED", "r2": "BOOTED", "sw": "STARTED"}
    assert {core_link.state, access_link.state} == {"STARTED"}
    with pytest.raises(APIError, match=f"configuration of node {r1.id} is locked while it is BOOTED") as refused:
        r1.ram = 2048
    assert refused.value.response.status_code == 400

    r1.stop(wait=True)
    assert (r1.state, r2.state, lab.state()) == ("STOPPED", "BOOTED", "STARTED")
    assert core_link.state == "STOPPED"
    r1.start(wait=True)
    assert r1.state == "BOOTED" and simulated.nodes[r1.id].compute_id in {c.id for c in host.computes}

    lab.stop()
    assert lab.state() == "STOPPED"
    assert {n.state for n in lab.nodes()} == {"STOPPED"}
    lab.wipe()
    assert lab.state() == "DEFINED_ON_CORE"
    assert {n.state for n in lab.nodes()} == {"DEFINED_ON_CORE"}
    assert {link.state for link in lab.links()} == {"DEFINED_ON_CORE"}
    assert "label: core" in lab.download()

    lab_id = lab.id
    lab.remove()
    assert lab_id not in client.get_lab_list(show_all=True)
    assert lab_id not in host.labs
    # What idle detection reads: the person's work shows up in telemetry as on a real controller.
    categories = {e.category for e in host.telemetry if e.data.get("lab_id") == lab_id}
    assert {"start_lab", "stop_node", "start_node", "stop_lab", "wipe_node"} <= categories


def test_nodes_and_links_come_and_go(client: virl2_client.ClientLibrary, sim: Simulator, host_key: str) -> None:
    lab = client.create_lab("Changes")
    a = lab.create_node("a", "alpine", 0, 0, populate_interfaces=True)
    b = lab.create_node("b", "alpine", 100, 0)
    link = lab.connect_two_nodes(a, b)
    slot_three = b.create_interface(slot=3)  # fills slots 1-3 at once, as CML does

    assert [i.slot for i in b.physical_interfaces()] == [0, 1, 2, 3]
    assert slot_three.slot == 3 and slot_three.label == "eth3"
    lab.remove_link(link)
    assert lab.links() == [] and sim.host(host_key).labs[lab.id].links == {}
    b.remove()
    assert [n.label for n in lab.nodes()] == ["a"]
    assert [n.label for n in sim.host(host_key).labs[lab.id].nodes.values()] == ["a"]


def test_refusals_name_the_element_and_what_to_do(
    client: virl2_client.ClientLibrary, sim: Simulator, host_key: str
) -> None:
    lab = client.create_lab("Refusals")
    a = lab.create_node("a", "iosv", 0, 0, populate_interfaces=True)
    b = lab.create_node("b", "iosv", 100, 0, populate_interfaces=True)
    link = lab.connect_two_nodes(a, b)
    lab.start()

    def refusal(action: object) -> httpx.Response:
        with pytest.raises(APIError) as error:
            action()  # type: ignore[operator]
        response: httpx.Response = error.value.response
        return response

    wiped = refusal(lambda: lab.wipe(wait=False))
    assert wiped.status_code == 400 and "must be stopped" in wiped.json()["description"]
    removed = refusal(lambda: a.remove())
    assert removed.status_code == 400 and a.id in removed.json()["description"]
    relinked = refusal(lambda: lab.create_link(link.interface_a, b.next_available_interface()))
    assert relinked.status_code == 400 and "already connected" in relinked.json()["description"]
    unknown = refusal(lambda: lab.create_node("c", "iosv", colour="red"))
    assert unknown.status_code == 422 and "colour" in unknown.json()["description"]
    assert len(sim.host(host_key).labs[lab.id].nodes) == 2


def test_catalogue_dashboard_and_computes(client: virl2_client.ClientLibrary, sim: Simulator, host_key: str) -> None:
    host = sim.host(host_key)
    definitions = {d["id"]: d for d in client.definitions.node_definitions()}
    images = client.definitions.image_definitions()
    iosv_images = client.definitions.image_definitions_for_node_definition("iosv")

    assert {"iosv", "iosvl2", "alpine", "ubuntu", "unmanaged_switch", "external_connector"} <= set(definitions)
    assert definitions["iosv"]["device"]["interfaces"]["has_loopback_zero"] is True
    assert {i["node_definition_id"] for i in images} == {"iosv", "iosvl2", "alpine", "ubuntu"}
    assert [i["node_definition_id"] for i in iosv_images] == ["iosv"]
    with pytest.raises(APIError, match="Node definition not found: nxos"):
        client.definitions.image_definitions_for_node_definition("nxos")

    assert set(client.system_management.compute_hosts) == {c.id for c in host.computes}
    assert client.system_management.system_notices == {}
    assert client.system_management.maintenance_mode is False

    mine = client.create_lab("Find me")
    assert [lab.id for lab in client.find_labs_by_title("Find me")] == [mine.id]


def test_convergence_waits_for_the_settle_time(
    client: virl2_client.ClientLibrary, sim: Simulator, host_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.configure(host_key, settle_seconds=600)
    lab = client.create_lab("Slow")
    lab.create_node("a", "alpine", 0, 0)
    assert lab.has_converged() is True  # adding a node changes no state

    lab.start(wait=False)
    assert lab.has_converged() is False
    later = sim.clock() + timedelta(seconds=600)
    monkeypatch.setattr(sim, "clock", lambda: later)
    assert lab.has_converged() is True


@pytest.fixture(autouse=True)
def _quiet_client_logs(caplog: pytest.LogCaptureFixture) -> None:
    # The client logs every convergence poll at INFO; keep failures readable.
    caplog.set_level(logging.WARNING, logger="virl2_client")
