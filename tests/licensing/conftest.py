"""License tests run against the CML simulator over HTTP; each test takes a host of its own."""

from __future__ import annotations

import pytest

from cml_cloud_manager.cml.simulator import RunningSimulator, Simulator
from cml_cloud_manager.cml.simulator.state import SimLicense
from cml_cloud_manager.config import Settings

from ..cml.conftest import host_key, served, sim  # noqa: F401
from ..simulated import simulated_settings


@pytest.fixture
async def settings(database_url: str, served: RunningSimulator) -> Settings:  # noqa: F811
    return simulated_settings(database_url, served)


@pytest.fixture
def unlicensed_host(sim: Simulator, host_key: str) -> str:  # noqa: F811
    """The test's host, never registered (seeding picks a license state at random)."""
    sim.host(host_key).license = SimLicense("unregistered", is_enterprise=True)
    return host_key
