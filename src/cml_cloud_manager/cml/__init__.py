"""Talking to Cisco Modeling Labs controllers: the async client, its typed errors and result types.

The simulator (`cml_cloud_manager.cml.simulator`) is imported explicitly by tests and the sandbox only.
"""

from cml_cloud_manager.cml.client import CMLClient, clear_token_cache
from cml_cloud_manager.cml.errors import CMLApiError, CMLAuthFailed, CMLError, CMLNotFound, CMLUnreachable
from cml_cloud_manager.cml.types import (
    ComputeHealth,
    ImportedLab,
    LabDetails,
    LabState,
    LabSummary,
    LabTopology,
    LicenseFeature,
    LicenseStatus,
    Licensing,
    SystemHealth,
    SystemInfo,
    SystemStats,
    TelemetryEvent,
    TopologyLink,
    TopologyNode,
    license_status,
    parse_cml_datetime,
)

__all__ = [
    "CMLApiError",
    "CMLAuthFailed",
    "CMLClient",
    "CMLError",
    "CMLNotFound",
    "CMLUnreachable",
    "ComputeHealth",
    "ImportedLab",
    "LabDetails",
    "LabState",
    "LabSummary",
    "LabTopology",
    "LicenseFeature",
    "LicenseStatus",
    "Licensing",
    "SystemHealth",
    "SystemInfo",
    "SystemStats",
    "TelemetryEvent",
    "TopologyLink",
    "TopologyNode",
    "clear_token_cache",
    "license_status",
    "parse_cml_datetime",
]
