"""Lab tests run against the CML simulator over HTTP: each test takes a host of its own, with no labs but the
ones it imports."""

from __future__ import annotations

import pytest

from cml_cloud_manager.cml import CMLClient
from cml_cloud_manager.cml.simulator import RunningSimulator, Simulator
from cml_cloud_manager.config import Settings

from ..cml.conftest import base_url, cml, host_key, served, sim  # noqa: F401
from ..simulated import simulated_settings


@pytest.fixture
async def settings(database_url: str, served: RunningSimulator) -> Settings:  # noqa: F811
    return simulated_settings(database_url, served)


@pytest.fixture
def empty_host(sim: Simulator, host_key: str) -> str:  # noqa: F811
    """The test's host, its seeded labs removed."""
    sim.host(host_key).labs.clear()
    return host_key


@pytest.fixture
async def host_cml(empty_host: str, cml: CMLClient) -> CMLClient:  # noqa: F811
    """A CML client for the test's (empty) host, to set up labs as a person would."""
    return cml
