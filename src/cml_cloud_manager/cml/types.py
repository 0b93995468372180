"""Our own view of what a CML 2.9 host reports. Callers never handle CML's raw JSON.

Each type has a `from_api` constructor that reads the CML payload defensively (missing optional fields get
neutral defaults); a payload that lacks a required field raises KeyError/TypeError/ValueError, which the
client turns into `CMLApiError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class LabState(StrEnum):
    DEFINED_ON_CORE = "DEFINED_ON_CORE"
    STOPPED = "STOPPED"
    STARTED = "STARTED"


class LicenseStatus(StrEnum):
    UNREGISTERED = "unregistered"
    REGISTERED = "registered"
    EVALUATION = "evaluation"
    EXPIRED = "expired"
    INVALID = "invalid"


def parse_cml_datetime(value: str) -> datetime:
    """Parse a CML timestamp into an aware UTC datetime.

    CML mixes `...Z`, `...+00:00` and offset-less ISO strings; offset-less ones are UTC on the controller.
    """
    parsed = datetime.fromisoformat(value.strip())
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _optional_datetime(value: Any) -> datetime | None:
    if not value:
        return None
    return parse_cml_datetime(str(value))


def _number(value: Any) -> float:
    return float(value) if value is not None else 0.0


@dataclass(frozen=True, slots=True)
class SystemInfo:
    version: str
    ready: bool
    allow_ssh_pubkey_auth: bool
    oui: str | None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> SystemInfo:
        return cls(
            version=str(data["version"]),
            ready=bool(data["ready"]),
            allow_ssh_pubkey_auth=bool(data.get("allow_ssh_pubkey_auth", False)),
            oui=data.get("oui"),
        )


@dataclass(frozen=True, slots=True)
class ComputeHealth:
    id: str
    hostname: str
    is_controller: bool
    valid: bool
    admission_state: str
    kvm_vmx_enabled: bool | None


@dataclass(frozen=True, slots=True)
class SystemHealth:
    valid: bool
    is_licensed: bool
    is_enterprise: bool
    controller_valid: bool
    core_connected: bool
    computes: tuple[ComputeHealth, ...]

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> SystemHealth:
        controller = data.get("controller") or {}
        computes = tuple(
            ComputeHealth(
                id=compute_id,
                hostname=str(compute.get("hostname", "")),
                is_controller=bool(compute.get("is_controller", False)),
                valid=bool(compute.get("valid")),
                admission_state=str(compute.get("admission_state", "")),
                kvm_vmx_enabled=compute.get("kvm_vmx_enabled"),
            )
            for compute_id, compute in (data.get("computes") or {}).items()
        )
        return cls(
            # null means "not known yet" on a booting controller; we treat unknown as not healthy.
            valid=bool(data["valid"]),
            is_licensed=bool(data.get("is_licensed")),
            is_enterprise=bool(data.get("is_enterprise", False)),
            controller_valid=bool(controller.get("valid", False)),
            core_connected=bool(controller.get("core_connected", False)),
            computes=computes,
        )


@dataclass(frozen=True, slots=True)
class SystemStats:
    """Totals over all compute hosts. Memory and disk are in bytes, allocated memory in MiB."""

    cpu_count: int
    cpu_percent: float
    memory_used: int
    memory_total: int
    disk_used: int
    disk_total: int
    controller_disk_used: int
    controller_disk_total: int
    compute_count: int
    running_nodes: int
    total_nodes: int
    allocated_cpus: int
    allocated_memory_mib: int

    @property
    def memory_percent(self) -> float:
        return 100.0 * self.memory_used / self.memory_total if self.memory_total else 0.0

    @property
    def disk_percent(self) -> float:
        return 100.0 * self.disk_used / self.disk_total if self.disk_total else 0.0

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> SystemStats:
        totals = data["all"]
        cpu, memory, disk = totals.get("cpu") or {}, totals["memory"], totals["disk"]
        controller_disk = (data.get("controller") or {}).get("disk") or {}
        computes = data.get("computes") or {}
        dominfos = [(compute.get("stats") or {}).get("dominfo") or {} for compute in computes.values()]

        def dominfo_sum(key: str) -> int:
            # Per-compute counters are nullable while a compute is still registering.
            return sum(int(info.get(key) or 0) for info in dominfos)

        return cls(
            cpu_count=int(cpu.get("count", 0)),
            cpu_percent=_number(cpu.get("percent")),
            memory_used=int(_number(memory.get("used"))),
            memory_total=int(_number(memory.get("total"))),
            disk_used=int(_number(disk.get("used"))),
            disk_total=int(_number(disk.get("total"))),
            controller_disk_used=int(_number(controller_disk.get("used"))),
            controller_disk_total=int(_number(controller_disk.get("total"))),
            compute_count=len(computes),
            running_nodes=dominfo_sum("running_nodes"),
            total_nodes=dominfo_sum("total_nodes"),
            allocated_cpus=dominfo_sum("allocated_cpus"),
            allocated_memory_mib=dominfo_sum("allocated_memory"),
        )


_REGISTERED = frozenset({"COMPLETED", "REGISTERED"})
_REGISTRATION_FAILED = frozenset({"FAILED", "REGISTRATION_FAILED"})
_AUTHORIZED = frozenset({"IN_COMPLIANCE", "AUTHORIZED", ""})
_EVALUATION = frozenset({"EVAL", "EVALUATION", "EVAL_MODE"})
_AUTHORIZATION_INVALID = frozenset({"OUT_OF_COMPLIANCE", "INVALID", "DISABLED"})


def license_status(
    registration_status: str | None,
    authorization_status: str | None,
    registration_expires: datetime | None,
    now: datetime,
) -> LicenseStatus:
    """Collapse CML's Smart Licensing registration/authorization pair into one status.

    Expiry wins over everything, then a failed registration; a registered host needs a healthy
    authorization to count as registered, otherwise it is invalid.
    """
    registration = (registration_status or "").upper()
    authorization = (authorization_status or "").upper()
    if "EXPIRED" in authorization or "EXPIRED" in registration:
        return LicenseStatus.EXPIRED
    if registration in _REGISTERED and registration_expires is not None and registration_expires <= now:
        return LicenseStatus.EXPIRED
    if registration in _REGISTRATION_FAILED:
        return LicenseStatus.INVALID
    if registration in _REGISTERED:
        return LicenseStatus.REGISTERED if authorization in _AUTHORIZED else LicenseStatus.INVALID
    if authorization in _EVALUATION:
        return LicenseStatus.EVALUATION
    if authorization in _AUTHORIZATION_INVALID:
        return LicenseStatus.INVALID
    return LicenseStatus.UNREGISTERED


@dataclass(frozen=True, slots=True)
class LicenseFeature:
    id: str
    name: str
    status: str
    in_use: int


@dataclass(frozen=True, slots=True)
class Licensing:
    status: LicenseStatus
    registration_status: str
    authorization_status: str
    product_license: str
    is_enterprise: bool
    smart_account: str | None
    virtual_account: str | None
    registration_expires: datetime | None
    authorization_expires: datetime | None
    last_failure: str | None
    udi_hostname: str | None
    product_uuid: str | None
    features: tuple[LicenseFeature, ...]

    @classmethod
    def from_api(cls, data: Mapping[str, Any], *, now: datetime | None = None) -> Licensing:
        registration = data.get("registration") or {}
        authorization = data.get("authorization") or {}
        product = data.get("product_license") or {}
        udi = data.get("udi") or {}
        registration_expires = _optional_datetime(registration.get("expires"))
        registration_status = str(registration.get("status") or "")
        authorization_status = str(authorization.get("status") or "")
        failure = (registration.get("register_time") or {}).get("failure") or (
            authorization.get("renew_time") or {}
        ).get("failure")
        return cls(
            status=license_status(
                registration_status, authorization_status, registration_expires, now or datetime.now(UTC)
            ),
            registration_status=registration_status,
            authorization_status=authorization_status,
            product_license=str(product.get("active") or ""),
            is_enterprise=bool(product.get("is_enterprise", False)),
            smart_account=registration.get("smart_account"),
            virtual_account=registration.get("virtual_account"),
            registration_expires=registration_expires,
            authorization_expires=_optional_datetime(authorization.get("expires")),
            last_failure=failure,
            udi_hostname=udi.get("hostname"),
            product_uuid=udi.get("product_uuid"),
            features=tuple(
                LicenseFeature(
                    id=str(feature["id"]),
                    name=str(feature.get("name", "")),
                    status=str(feature.get("status", "")),
                    in_use=int(feature.get("in_use") or 0),
                )
                for feature in data.get("features") or ()
            ),
        )


@dataclass(frozen=True, slots=True)
class LabSummary:
    """What a lab listing needs; `owner` is the owner's username."""

    id: str
    title: str
    state: LabState
    owner: str
    owner_id: str | None
    node_count: int
    link_count: int
    created: datetime | None
    modified: datetime | None
    description: str


@dataclass(frozen=True, slots=True)
class LabDetails(LabSummary):
    notes: str
    owner_fullname: str
    permissions: tuple[str, ...]

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> LabDetails:
        return cls(
            id=str(data["id"]),
            title=str(data["lab_title"]),
            state=LabState(data["state"]),
            owner=str(data.get("owner_username") or data.get("owner") or ""),
            owner_id=data.get("owner"),
            node_count=int(data.get("node_count") or 0),
            link_count=int(data.get("link_count") or 0),
            created=_optional_datetime(data.get("created")),
            modified=_optional_datetime(data.get("modified")),
            description=str(data.get("lab_description") or ""),
            notes=str(data.get("lab_notes") or ""),
            owner_fullname=str(data.get("owner_fullname") or ""),
            permissions=tuple(str(p) for p in data.get("effective_permissions") or ()),
        )


@dataclass(frozen=True, slots=True)
class TopologyNode:
    id: str
    label: str
    node_definition: str
    x: int
    y: int
    interface_count: int


@dataclass(frozen=True, slots=True)
class TopologyLink:
    id: str
    node_a: str
    node_b: str
    label: str


@dataclass(frozen=True, slots=True)
class LabTopology:
    title: str
    description: str
    notes: str
    owner_id: str | None
    schema_version: str
    nodes: tuple[TopologyNode, ...]
    links: tuple[TopologyLink, ...]

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> LabTopology:
        lab = data["lab"]
        return cls(
            title=str(lab.get("title") or ""),
            description=str(lab.get("description") or ""),
            notes=str(lab.get("notes") or ""),
            owner_id=lab.get("owner"),
            schema_version=str(lab.get("version") or ""),
            nodes=tuple(
                TopologyNode(
                    id=str(node["id"]),
                    label=str(node["label"]),
                    node_definition=str(node["node_definition"]),
                    x=int(node.get("x") or 0),
                    y=int(node.get("y") or 0),
                    interface_count=len(node.get("interfaces") or ()),
                )
                for node in data["nodes"]
            ),
            links=tuple(
                TopologyLink(
                    id=str(link["id"]),
                    node_a=str(link.get("node_a") or link.get("n1") or ""),
                    node_b=str(link.get("node_b") or link.get("n2") or ""),
                    label=str(link.get("label") or ""),
                )
                for link in data["links"]
            ),
        )


@dataclass(frozen=True, slots=True)
class ImportedLab:
    id: str
    warnings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TelemetryEvent:
    """One CML telemetry event. `user_id`/`lab_id` come from the event data when CML recorded them."""

    category: str
    timestamp: datetime
    user_id: str | None
    lab_id: str | None
    data: Mapping[str, Any]

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> TelemetryEvent:
        data = raw.get("data") or {}
        user_id, lab_id = data.get("user_id"), data.get("lab_id")
        return cls(
            category=str(raw["category"]),
            timestamp=parse_cml_datetime(str(raw["timestamp"])),
            user_id=str(user_id) if user_id else None,
            lab_id=str(lab_id) if lab_id else None,
            # Read-only so a frozen event stays frozen all the way down.
            data=MappingProxyType(dict(data)),
        )
