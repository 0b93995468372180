"""Idle detection runs against the CML simulator over HTTP and the AWS emulator (a moto server process)."""

from __future__ import annotations

import pytest

from cml_cloud_manager.cml.simulator import RunningSimulator
from cml_cloud_manager.config import Settings

# Fixtures of the AWS and CML adapter tests, shared here (pytest finds fixtures by the names in a conftest).
from ..aws.conftest import (  # noqa: F401
    clients,
    fake_aws_env,
    launch,
    moto,
    moto_clients,
    moto_url,
    register_ami,
)
from ..cml.conftest import served, sim  # noqa: F401
from ..simulated import simulated_settings


@pytest.fixture
async def settings(database_url: str, served: RunningSimulator, moto: str) -> Settings:  # noqa: F811
    return simulated_settings(database_url, served, aws_endpoint_url=moto, idle_timeout_minutes=60)
