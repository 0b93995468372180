"""CMLClient against the simulator over real HTTP: every method, lab lifecycle, licensing, telemetry."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from cml_cloud_manager.cml import (
    CMLApiError,
    CMLClient,
    CMLNotFound,
    LabState,
    LicenseStatus,
    clear_token_cache,
)
from cml_cloud_manager.cml.simulator import Simulator
from cml_cloud_manager.cml.simulator.state import ADMIN_ID, SimLicense

TWO_ROUTERS = """
lab:
  title: Two routers
  description: r1 and r2 back to back
  notes: ''
  version: 0.2.2
nodes:
  - id: n0
    label: r1
    node_definition: iosv
    x: 0
    y: 0
    configuration: hostname r1
    interfaces:
      - {id: i0, label: Loopback0, type: loopback}
      - {id: i1, label: GigabitEthernet0/0, type: physical, slot: 0}
  - id: n1
    label: r2
    node_definition: iosv
    x: 200
    y: 0
    interfaces:
      - {id: i0, label: GigabitEthernet0/0, type: physical, slot: 0}
links:
  - {id: l0, n1: n0, n2: n1, i1: i1, i2: i0, label: r1-r2}
"""


async def test_system_information_needs_no_login(cml: CMLClient, sim: Simulator, host_key: str) -> None:
    info = await cml.system_information()

    host = sim.host(host_key)
    assert info.version == host.version
    assert info.version.startswith("2.9.")
    assert info.ready is True
    assert host.auth_count == 0


async def test_system_health_reports_license_and_computes(cml: CMLClient, sim: Simulator, host_key: str) -> None:
    health = await cml.system_health()

    host = sim.host(host_key)
    assert health.valid and health.controller_valid and health.core_connected
    assert health.is_licensed == (host.license.kind in ("registered", "evaluation"))
    assert health.is_enterprise == host.license.is_enterprise
    assert {c.id for c in health.computes} == {c.id for c in host.computes}
    assert [c.hostname for c in health.computes if c.is_controller] == ["cml-controller"]


async def test_system_stats_follow_running_nodes(cml: CMLClient, sim: Simulator, host_key: str) -> None:
    host = sim.host(host_key)
    before = await cml.system_stats()

    assert before.compute_count == len(host.computes)
    assert before.cpu_count == sum(c.cpu_count for c in host.computes)
    assert before.running_nodes == len(host.running_nodes())
    assert 0 < before.cpu_percent <= 100
    assert 0 < before.memory_used < before.memory_total
    assert 0 < before.disk_used < before.disk_total
    assert 0 < before.controller_disk_used < before.controller_disk_total

    imported = await cml.import_lab(TWO_ROUTERS)
    await cml.start_lab(imported.id)
    after = await cml.system_stats()

    assert after.running_nodes == before.running_nodes + 2
    assert after.allocated_memory_mib == before.allocated_memory_mib + 2 * 512
    assert after.allocated_cpus == before.allocated_cpus + 2


async def test_list_labs_and_details_match_the_host(cml: CMLClient, sim: Simulator, host_key: str) -> None:
    lab_ids = await cml.list_labs()
    labs = await cml.labs_with_details()

    host = sim.host(host_key)
    assert sorted(lab_ids) == sorted(host.labs)
    assert 1 <= len(labs) <= 4
    assert [lab.id for lab in labs] == lab_ids
    for lab in labs:
        seeded = host.labs[lab.id]
        assert lab.title == seeded.title
        assert lab.state == LabState(seeded.state)
        assert lab.owner == seeded.owner.username
        assert lab.owner_id == seeded.owner.id
        assert (lab.node_count, lab.link_count) == (len(seeded.nodes), len(seeded.links))
        assert lab.created is not None and lab.created.tzinfo is not None
        assert lab.description == seeded.description
    one = await cml.get_lab(lab_ids[0])
    assert one == labs[0]


async def test_labs_with_details_bounds_concurrency(cml: CMLClient, sim: Simulator, host_key: str) -> None:
    for n in range(4):
        await cml.import_lab(TWO_ROUTERS, title=f"copy {n}")
    host = sim.host(host_key)
    sim.configure(host_key, slow_seconds=0.05)
    host.max_inflight = 0

    labs = await cml.labs_with_details(concurrency=2)

    assert len(labs) == len(host.labs) >= 5
    assert host.max_inflight == 2


async def test_lab_lifecycle_follows_cml_states_and_records_telemetry(cml: CMLClient) -> None:
    started_at = datetime.now(UTC) - timedelta(seconds=1)
    lab_id = (await cml.import_lab(TWO_ROUTERS)).id
    assert await cml.lab_state(lab_id) == LabState.DEFINED_ON_CORE

    await cml.start_lab(lab_id)
    assert await cml.lab_state(lab_id) == LabState.STARTED
    await cml.stop_lab(lab_id)
    assert (await cml.get_lab(lab_id)).state == LabState.STOPPED
    await cml.wipe_lab(lab_id)
    assert await cml.lab_state(lab_id) == LabState.DEFINED_ON_CORE
    await cml.delete_lab(lab_id)

    with pytest.raises(CMLNotFound):
        await cml.get_lab(lab_id)
    assert lab_id not in await cml.list_labs()
    events = [e for e in await cml.telemetry_events(since=started_at) if e.lab_id == lab_id]
    assert [e.category for e in events] == ["import_lab", "start_lab", "stop_lab", "wipe_node", "wipe_node"]
    assert {e.user_id for e in events} == {ADMIN_ID}


async def test_lab_topology_lists_nodes_and_links(cml: CMLClient) -> None:
    lab_id = (await cml.import_lab(TWO_ROUTERS)).id

    topology = await cml.lab_topology(lab_id)

    assert topology.title == "Two routers"
    assert topology.description == "r1 and r2 back to back"
    assert topology.owner_id == ADMIN_ID
    by_label = {node.label: node for node in topology.nodes}
    assert set(by_label) == {"r1", "r2"}
    assert (by_label["r1"].interface_count, by_label["r2"].interface_count) == (2, 1)
    assert by_label["r2"].x == 200
    [link] = topology.links
    assert {link.node_a, link.node_b} == {by_label["r1"].id, by_label["r2"].id}
    assert link.label == "r1-r2"


async def test_download_then_import_round_trips_a_lab(cml: CMLClient, sim: Simulator, host_key: str) -> None:
    original_id = next(iter(sim.host(host_key).labs))
    original_yaml = await cml.download_lab(original_id)

    imported = await cml.import_lab(original_yaml, title="Round trip")
    copy_yaml = await cml.download_lab(imported.id)

    assert imported.id != original_id
    assert imported.warnings == ()
    original, copy = yaml.safe_load(original_yaml), yaml.safe_load(copy_yaml)
    assert copy["lab"].pop("title") == "Round trip"
    original["lab"].pop("title")
    assert copy == original
    details = await cml.get_lab(imported.id)
    seeded = sim.host(host_key).labs[original_id]
    assert (details.node_count, details.link_count) == (len(seeded.nodes), len(seeded.links))
    assert details.state == LabState.DEFINED_ON_CORE


async def test_import_takes_the_title_from_the_yaml_by_default(cml: CMLClient) -> None:
    imported = await cml.import_lab(TWO_ROUTERS)

    assert (await cml.get_lab(imported.id)).title == "Two routers"


async def test_import_rejects_an_invalid_topology(cml: CMLClient) -> None:
    with pytest.raises(CMLApiError) as failure:
        await cml.import_lab("lab: {version: 0.2.2}\nlinks:\n  - {id: l0, n1: n0, n2: n1, i1: i0, i2: i0}\n")

    assert failure.value.status == 400
    assert "Import failed" in failure.value.message
    assert "refers to unknown element" in failure.value.message


async def test_license_register_reregister_and_deregister(cml: CMLClient, sim: Simulator, host_key: str) -> None:
    sim.host(host_key).license = SimLicense("unregistered", is_enterprise=True)
    assert (await cml.licensing()).status == LicenseStatus.UNREGISTERED

    await cml.register_license("ZmFrZS10b2tlbi0x%3D")
    registered = await cml.licensing()

    assert registered.status == LicenseStatus.REGISTERED
    assert (registered.registration_status, registered.authorization_status) == ("COMPLETED", "IN_COMPLIANCE")
    assert registered.smart_account is not None and registered.smart_account.startswith("SA-")
    assert registered.registration_expires is not None
    assert registered.registration_expires > datetime.now(UTC) + timedelta(days=300)
    assert registered.product_license == "CML_Enterprise" and registered.is_enterprise
    with pytest.raises(CMLApiError) as conflict:
        await cml.register_license("ZmFrZS10b2tlbi0x%3D")
    assert conflict.value.status == 409
    await cml.register_license("another-token", reregister=True)

    assert await cml.deregister_license() is True
    assert (await cml.licensing()).status == LicenseStatus.UNREGISTERED
    with pytest.raises(CMLApiError) as twice:
        await cml.deregister_license()
    assert twice.value.status == 400


async def test_license_registration_with_a_bad_token_ends_invalid(
    cml: CMLClient, sim: Simulator, host_key: str
) -> None:
    sim.host(host_key).license = SimLicense("evaluation", is_enterprise=False)
    assert (await cml.licensing()).status == LicenseStatus.EVALUATION

    await cml.register_license("invalid-token")
    licensing = await cml.licensing()

    assert licensing.status == LicenseStatus.INVALID
    assert licensing.last_failure is not None and "invalid" in licensing.last_failure
    assert licensing.product_license == "CML_Personal"


async def test_telemetry_events_are_ordered_and_filtered_by_since(
    cml: CMLClient, sim: Simulator, host_key: str
) -> None:
    events = await cml.telemetry_events()

    assert len(events) == len(sim.host(host_key).telemetry)
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)
    assert all(e.timestamp.tzinfo is not None for e in events)
    assert {"system_stats", "user_activity"} <= {e.category for e in events}
    assert await cml.telemetry_events(since=events[-1].timestamp) == []

    later = events[-1].timestamp + timedelta(seconds=5)
    sim.add_telemetry_event(
        host_key, "start_node", {"user_id": "u-1", "lab_id": "lab-1", "node_id": "n-1"}, timestamp=later
    )
    [fresh] = await cml.telemetry_events(since=events[-1].timestamp)

    assert (fresh.category, fresh.user_id, fresh.lab_id, fresh.timestamp) == (
        "start_node",
        "u-1",
        "lab-1",
        later,
    )
    assert fresh.data["node_id"] == "n-1"


async def test_token_is_shared_by_clients_of_the_same_host(base_url: str, sim: Simulator, host_key: str) -> None:
    clear_token_cache()
    async with CMLClient(base_url, sim.username, sim.password) as first:
        await first.list_labs()
    async with CMLClient(base_url, sim.username, sim.password) as second:
        await second.system_stats()

    assert sim.host(host_key).auth_count == 1


async def test_token_is_renewed_once_after_the_host_drops_it(cml: CMLClient, sim: Simulator, host_key: str) -> None:
    await cml.list_labs()
    host = sim.host(host_key)
    assert host.auth_count == 1

    sim.invalidate_tokens(host_key)
    results = await asyncio.gather(*(cml.system_stats() for _ in range(8)))

    assert len(results) == 8
    assert host.auth_count == 2
    assert len(host.tokens) == 1
