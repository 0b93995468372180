"""Cisco's own client library must accept a simulated host: that keeps the simulator honest about CML."""

from __future__ import annotations

import pytest

from cml_cloud_manager.cml.simulator import Simulator

virl2_client = pytest.importorskip("virl2_client")


def test_virl2_client_logs_in_and_lists_labs(base_url: str, sim: Simulator, host_key: str) -> None:
    # virl2-client joins "api/v0/" onto the URL, so a base URL with a path needs its trailing slash.
    client = virl2_client.ClientLibrary(
        f"{base_url}/",
        sim.username,
        sim.password,
        allow_http=True,
        ssl_verify=False,
        raise_for_auth_failure=True,
    )

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
