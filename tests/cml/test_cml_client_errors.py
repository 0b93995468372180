"""How CMLClient fails: every failure is a typed CMLError naming the host, never leaking secrets."""

from __future__ import annotations

import time
import uuid

import pytest

from cml_cloud_manager.cml import (
    CMLApiError,
    CMLAuthFailed,
    CMLClient,
    CMLError,
    CMLNotFound,
    CMLUnreachable,
    LabState,
)
from cml_cloud_manager.cml.client import Reply, _describe
from cml_cloud_manager.cml.simulator import Simulator
from cml_cloud_manager.errors import NotFound, UpstreamError


async def test_nothing_listening_is_unreachable(dead_url: str) -> None:
    async with CMLClient(dead_url, "admin", "pw", timeout=2.0) as client:
        with pytest.raises(CMLUnreachable) as failure:
            await client.system_information()
        with pytest.raises(CMLUnreachable):
            await client.list_labs()

    assert dead_url in failure.value.message
    assert failure.value.host == dead_url
    assert isinstance(failure.value, UpstreamError)


async def test_a_gateway_answering_503_is_unreachable(cml: CMLClient, sim: Simulator, host_key: str) -> None:
    await cml.list_labs()
    sim.configure(host_key, unreachable=True)

    with pytest.raises(CMLUnreachable) as failure:
        await cml.list_labs()

    assert failure.value.status == 503
    assert cml.base_url in failure.value.message
    sim.configure(host_key, unreachable=False)
    assert len(await cml.list_labs()) == len(sim.host(host_key).labs)


async def test_a_slow_host_times_out_as_unreachable(base_url: str, sim: Simulator, host_key: str) -> None:
    sim.configure(host_key, slow_seconds=2.0)
    async with CMLClient(base_url, sim.username, sim.password, timeout=0.2) as client:
        began = time.monotonic()
        with pytest.raises(CMLUnreachable) as failure:
            await client.system_information()
        elapsed = time.monotonic() - began

    assert elapsed < 1.5
    assert "within 0.2s" in failure.value.message
    assert base_url in failure.value.message


async def test_wrong_password_is_auth_failed_without_leaking_it(base_url: str, sim: Simulator) -> None:
    password = f"wrong-{uuid.uuid4().hex}"
    async with CMLClient(base_url, sim.username, password) as client:
        with pytest.raises(CMLAuthFailed) as failure:
            await client.list_labs()

    assert failure.value.status == 403
    assert base_url in failure.value.message
    assert "Authentication failed" in failure.value.message
    assert password not in failure.value.message
    assert password not in repr(failure.value.detail)


async def test_credentials_rejected_after_login_is_auth_failed(cml: CMLClient, sim: Simulator, host_key: str) -> None:
    await cml.list_labs()
    host = sim.host(host_key)
    sim.configure(host_key, reject_credentials=True)

    with pytest.raises(CMLAuthFailed):
        await cml.system_stats()
    assert host.auth_count == 1  # the renewal attempt was refused

    sim.configure(host_key, reject_credentials=False)
    await cml.system_stats()
    assert host.auth_count == 2


async def test_a_non_admin_user_is_refused_licensing(base_url: str, sim: Simulator) -> None:
    async with CMLClient(base_url, "student1", sim.password) as student:
        await student.list_labs()
        with pytest.raises(CMLAuthFailed) as failure:
            await student.licensing()

    assert failure.value.status == 403
    assert "Access denied" in failure.value.message


async def test_an_unknown_lab_is_not_found(cml: CMLClient) -> None:
    missing = str(uuid.uuid4())

    with pytest.raises(CMLNotFound) as failure:
        await cml.get_lab(missing)
    for call in (cml.lab_state, cml.start_lab, cml.download_lab, cml.delete_lab, cml.lab_topology):
        with pytest.raises(CMLNotFound):
            await call(missing)

    with pytest.raises(CMLNotFound):
        await cml.get_lab("../licensing")  # must not be resolved to another endpoint

    assert f"Lab not found: {missing}" in failure.value.message
    assert isinstance(failure.value, NotFound) and isinstance(failure.value, CMLError)
    assert failure.value.status_code == 404


async def test_deleting_a_started_lab_is_refused_with_cmls_message(
    cml: CMLClient, sim: Simulator, host_key: str
) -> None:
    lab_id = next(iter(sim.host(host_key).labs))
    await cml.start_lab(lab_id)

    with pytest.raises(CMLApiError) as failure:
        await cml.delete_lab(lab_id)

    assert failure.value.status == 400
    assert "must be stopped and wiped before it can be removed" in failure.value.message
    assert failure.value.detail["description"].startswith(f"Lab {lab_id} is STARTED")
    assert (await cml.get_lab(lab_id)).state == LabState.STARTED


async def test_wiping_a_running_lab_is_refused(cml: CMLClient, sim: Simulator, host_key: str) -> None:
    lab_id = next(iter(sim.host(host_key).labs))
    await cml.start_lab(lab_id)

    with pytest.raises(CMLApiError) as failure:
        await cml.wipe_lab(lab_id)

    assert "must be stopped before it can be wiped" in failure.value.message
    assert await cml.lab_state(lab_id) == LabState.STARTED


def test_error_descriptions_redact_the_secret_sent() -> None:
    body = b'{"code": 400, "description": "token s3cr3t-T0KEN rejected"}'
    response = Reply("POST", "/licensing/registration", 400, "Bad Request", "application/json", body)

    assert _describe(response, "s3cr3t-T0KEN") == "token *** rejected"
    assert _describe(Reply("GET", "/labs", 502, "Bad Gateway", "text/plain", b""), None) == "Bad Gateway"
