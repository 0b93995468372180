"""The simulator itself: seeding, drift, the CML wire contract (checked against the 2.9 schema), control API,
scale, and the `run_simulator` entry point the sandbox uses."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from cml_cloud_manager.cml import CMLClient, CMLUnreachable, LicenseStatus
from cml_cloud_manager.cml.simulator import RunningSimulator, Simulator
from cml_cloud_manager.cml.simulator.payloads import system_stats
from cml_cloud_manager.cml.simulator.state import ADMIN_ID, SimHost

SPEC = json.loads((Path(__file__).with_name("cml-2.9-openapi-subset.json")).read_text())
TOPOLOGY = """
lab: {title: Spec check, version: 0.3.0}
nodes:
  - {id: n0, label: a, node_definition: alpine, x: 0, y: 0, interfaces: [{id: i0, type: physical}]}
  - {id: n1, label: b, node_definition: alpine, x: 9, y: 9, interfaces: [{id: i0, type: physical}]}
links:
  - {id: l0, n1: n0, n2: n1, i1: i0, i2: i0}
"""


def test_seeding_depends_only_on_the_host_key() -> None:
    first, second = Simulator(), Simulator()

    a, b = first.host("worker-17"), second.host("worker-17")
    other = first.host("worker-18")

    def fingerprint(host: SimHost) -> object:
        return (
            host.version,
            host.license.kind,
            [c.id for c in host.computes],
            sorted(u.username for u in host.users.values()),
            [(lab.id, lab.title, lab.state, sorted(lab.nodes), sorted(lab.links)) for lab in host.labs.values()],
        )

    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(other)
    assert 1 <= len(a.labs) <= 4
    assert all(2 <= len(lab.nodes) <= 6 and lab.links for lab in a.labs.values())


def test_a_fleet_gets_varied_labs_licenses_and_idle_times() -> None:
    sim = Simulator()
    now = sim.clock()
    hosts = [sim.host(f"fleet-{n}") for n in range(60)]

    assert {h.license.kind for h in hosts} == {
        "registered",
        "evaluation",
        "unregistered",
        "expired",
        "invalid",
    }
    assert {lab.state for h in hosts for lab in h.labs.values()} == {"DEFINED_ON_CORE", "STOPPED", "STARTED"}

    def idle_for(host: SimHost) -> timedelta:
        user_events = [e for e in host.telemetry if e.data.get("user_id") not in (None, ADMIN_ID)]
        return now - max(e.timestamp for e in user_events)

    idle = [idle_for(h) for h in hosts]
    assert any(gap < timedelta(minutes=30) for gap in idle)
    assert any(gap > timedelta(hours=2) for gap in idle)


def test_system_stats_drift_over_time() -> None:
    sim = Simulator()
    host = sim.host("drifting")
    t0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

    samples = [system_stats(host, t0 + timedelta(seconds=45 * n))["all"] for n in range(6)]

    cpu = [s["cpu"]["percent"] for s in samples]
    memory = [s["memory"]["used"] for s in samples]
    assert len(set(cpu)) == len(cpu) and len(set(memory)) == len(memory)
    assert all(0 < c <= 100 for c in cpu)
    assert all(0 < m < samples[0]["memory"]["total"] for m in memory)
    assert system_stats(host, t0) == system_stats(host, t0)


# -- wire contract -----------------------------------------------------------------------------------------


def assert_matches_spec(path: str, method: str, status: int, body: Any) -> None:
    response = SPEC["paths"][path][method.lower()]["responses"][str(status)]
    assert_matches_schema(response["content"]["application/json"]["schema"], body, f"{method} {path} -> {status}")


def assert_matches_schema(schema: dict[str, Any], body: Any, what: str) -> None:
    errors = sorted(
        jsonschema.Draft202012Validator({**schema, "components": SPEC["components"]}).iter_errors(body), key=str
    )
    assert not errors, f"{what} breaks the CML schema:\n" + "\n".join(
        f"- {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:10]
    )


async def test_every_endpoint_answers_in_the_cml_schema(served: RunningSimulator, host_key: str) -> None:
    api = f"{served.base_url(host_key)}/api/v0"
    async with httpx.AsyncClient(base_url=api) as http:

        async def check(method: str, path: str, status: int, url: str | None = None, **kwargs: Any) -> Any:
            response = await http.request(method, url or path, **kwargs)
            assert response.status_code == status, response.text
            body = response.json()
            assert_matches_spec(path, method, status, body)
            return body

        token = await check(
            "POST",
            "/authenticate",
            200,
            json={"username": served.sim.username, "password": served.sim.password},
        )
        http.headers["Authorization"] = f"Bearer {token}"
        await check("GET", "/authok", 200)
        await check("GET", "/system_information", 200)
        await check("GET", "/system_health", 200)
        await check("GET", "/system_stats", 200)
        await check("GET", "/licensing", 200)
        await check("GET", "/users", 200)
        await check("POST", "/users", 201, json={"username": "new-user", "password": "pw", "fullname": "New"})
        lab_ids = await check("GET", "/labs", 200, params={"show_all": "true"})
        created = await check("POST", "/labs", 200, json={"title": "Empty", "description": "d"})
        imported = await check("POST", "/import", 200, content=TOPOLOGY.encode(), params={"title": "Imported"})
        for lab_id in [*lab_ids, created["id"], imported["id"]]:
            lab = "/labs/{lab_id}"
            await check("GET", lab, 200, f"/labs/{lab_id}")
            await check("GET", f"{lab}/state", 200, f"/labs/{lab_id}/state")
            await check("GET", f"{lab}/topology", 200, f"/labs/{lab_id}/topology")
            await check("GET", f"{lab}/lab_element_state", 200, f"/labs/{lab_id}/lab_element_state")
            await check("GET", f"{lab}/nodes", 200, f"/labs/{lab_id}/nodes")
            await check("GET", f"{lab}/nodes", 200, f"/labs/{lab_id}/nodes", params={"data": "true"})
        body = {"label": "n9", "node_definition": "iosv", "x": 1, "y": 2, "ram": 1024, "tags": ["core"]}
        node = await check("POST", "/labs/{lab_id}/nodes", 200, f"/labs/{created['id']}/nodes", json=body)
        # The single node answers in the Node schema too (its path is not in the subset, its schema is).
        single = (await http.get(f"/labs/{created['id']}/nodes/{node['id']}")).json()
        assert_matches_schema({"$ref": "#/components/schemas/Node"}, single, "GET /labs/{lab_id}/nodes/{node_id}")
        assert (single["ram"], single["tags"], single["state"]) == (1024, ["core"], "DEFINED_ON_CORE")
        await check("PATCH", "/labs/{lab_id}", 200, f"/labs/{created['id']}", json={"title": "Renamed"})
        await http.put(f"/labs/{imported['id']}/start")
        await check("GET", "/telemetry/events", 200)
        await check("GET", "/labs/{lab_id}", 404, f"/labs/{uuid.uuid4()}")
        await check("DELETE", "/logout", 200)
        await check("GET", "/authok", 401)
        await check("POST", "/authenticate", 403, json={"username": served.sim.username, "password": "nope"})


async def test_missing_or_foreign_tokens_get_401(served: RunningSimulator, host_key: str) -> None:
    other_host = f"{host_key}-other"
    async with CMLClient(served.base_url(other_host), served.sim.username, served.sim.password) as other:
        await other.list_labs()
    foreign = next(iter(served.sim.host(other_host).tokens))
    async with httpx.AsyncClient(base_url=f"{served.base_url(host_key)}/api/v0") as http:
        missing = await http.get("/labs")
        wrong = await http.get("/labs", headers={"Authorization": f"Bearer {foreign}"})

    assert missing.status_code == wrong.status_code == 401
    assert missing.json() == {"code": 401, "description": "No authorization token provided."}
    assert wrong.json()["code"] == 401


async def test_listing_without_show_all_is_limited_to_own_labs(served: RunningSimulator, host_key: str) -> None:
    host = served.sim.host(host_key)
    async with CMLClient(served.base_url(host_key), "student1", served.sim.password) as student:
        own = await student.labs_with_details()

    student_id = next(u.id for u in host.users.values() if u.username == "student1")
    assert {lab.id for lab in own} == {lab.id for lab in host.labs.values() if lab.owner.id == student_id}


# -- control API --------------------------------------------------------------------------------------------


async def test_control_api_drives_a_host_over_http(served: RunningSimulator, host_key: str) -> None:
    control = f"{served.root_url}/_sim/hosts/{host_key}"
    async with (
        httpx.AsyncClient() as http,
        CMLClient(served.base_url(host_key), served.sim.username, served.sim.password) as cml,
    ):
        config = await http.patch(
            f"{control}/config", json={"slow_seconds": 0.01, "unreachable": False, "settle_seconds": 2.5}
        )
        assert config.json() == {
            "slow_seconds": 0.01,
            "unreachable": False,
            "reject_credentials": False,
            "settle_seconds": 2.5,
        }
        assert served.sim.host(host_key).config.slow_seconds == 0.01
        assert served.sim.host(host_key).config.settle_seconds == 2.5
        bad = await http.patch(f"{control}/config", json={"colour": "red"})
        assert bad.status_code == 422

        stamp = "2030-01-01T00:00:00Z"
        added = await http.post(
            f"{control}/telemetry",
            json=[{"category": "user_activity", "data": {"user_id": "u7"}, "timestamp": stamp}],
        )
        assert added.status_code == 201
        [event] = await cml.telemetry_events(since=datetime(2029, 12, 31, tzinfo=UTC))
        assert (event.user_id, event.timestamp.year) == ("u7", 2030)

        await cml.import_lab(TOPOLOGY)
        hosts = (await http.get(f"{served.root_url}/_sim/hosts")).json()
        summary = next(h for h in hosts if h["key"] == host_key)
        assert [lab["id"] for lab in summary["labs"]] == list(served.sim.host(host_key).labs)
        assert summary["auth_count"] == 1

        assert (await http.post(f"{control}/invalidate_tokens")).status_code == 204
        await cml.list_labs()
        assert served.sim.host(host_key).auth_count == 2

        assert (await http.delete(control)).status_code == 204
        reseeded = await cml.labs_with_details()
        assert "Spec check" not in {lab.title for lab in reseeded}
        assert len(reseeded) == len(Simulator().host(host_key).labs)


async def test_serves_a_thousand_hosts_concurrently(served: RunningSimulator) -> None:
    keys = [f"fleet-{uuid.uuid4().hex[:8]}-{n}" for n in range(1000)]
    # One pooled client keeps the test about the simulator rather than about client setup; the gate keeps
    # httpx's pool from queueing a thousand waiters, which it handles badly.
    gate = asyncio.Semaphore(100)
    async with httpx.AsyncClient() as http:

        async def info(key: str) -> httpx.Response:
            async with gate:
                return await http.get(f"{served.base_url(key)}/api/v0/system_information")

        answers = await asyncio.gather(*(info(key) for key in keys))
    assert [a.status_code for a in answers] == [200] * 1000
    assert [a.json()["version"] for a in answers] == [served.sim.host(key).version for key in keys]
    assert set(keys) <= set(served.sim.hosts())

    async def poll(key: str) -> tuple[int, LicenseStatus]:
        async with CMLClient(served.base_url(key), served.sim.username, served.sim.password) as cml:
            stats, licensing = await asyncio.gather(cml.system_stats(), cml.licensing())
            return stats.running_nodes, licensing.status

    sample = keys[::20]
    results = await asyncio.gather(*(poll(key) for key in sample))
    assert [r[0] for r in results] == [len(served.sim.host(k).running_nodes()) for k in sample]
    assert len({r[1] for r in results}) >= 3


# -- run_simulator ------------------------------------------------------------------------------------------


@pytest.fixture
def simulator_process() -> Iterator[tuple[subprocess.Popen[str], int]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    code = (
        "from cml_cloud_manager.cml.simulator import run_simulator; "
        f"run_simulator('127.0.0.1', {port}, ['alpha', 'beta'], 'labadmin', 'lab-pass')"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        yield process, port
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_run_simulator_prints_hosts_and_serves_them(
    simulator_process: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = simulator_process
    assert process.stdout is not None
    lines = [process.stdout.readline().strip() for _ in range(3)]

    root = f"http://127.0.0.1:{port}"
    assert lines[0].startswith(f"CML simulator on {root}")
    base_url = f"{root}/hosts/alpha"
    # The trailing slash keeps the host path when a client joins "api/v0/" onto it, as virl2-client does.
    assert lines[1] == f"alpha: base_url={base_url}/ username=labadmin password=lab-pass"
    assert lines[2].startswith("beta: ")
    async with CMLClient(base_url, "labadmin", "lab-pass", timeout=2.0) as cml:
        for _ in range(500):  # the banner is printed before uvicorn binds, so wait until it answers
            try:
                labs = await cml.list_labs()
                break
            except CMLUnreachable:
                await asyncio.sleep(0.02)
        else:
            pytest.fail("run_simulator never answered")
    assert sorted(labs) == sorted(Simulator().host("alpha").labs)
