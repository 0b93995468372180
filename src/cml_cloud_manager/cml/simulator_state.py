"""In-memory state of simulated CML hosts: users and tokens, lab lifecycle, licensing, telemetry.

Plain dicts and dataclasses, no I/O, so one process can hold a thousand hosts. Seeding lives in
`simulator_seed`, HTTP bodies in `simulator_payloads`, topology YAML in `simulator_topology`, routing in
`simulator`.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

ADMIN_ID = "00000000-0000-4000-a000-000000000000"  # what real controllers give the built-in admin
RUNNING_NODE_STATES = frozenset({"STARTED", "BOOTED"})
# node definition -> (interface label pattern, RAM MiB, vCPUs, has loopback)
NODE_DEFINITIONS: dict[str, tuple[str, int | None, int | None, bool]] = {
    "iosv": ("GigabitEthernet0/{n}", 512, 1, True),
    "iosvl2": ("GigabitEthernet0/{n}", 768, 1, True),
    "alpine": ("eth{n}", 512, 1, False),
    "ubuntu": ("ens{n2}", 2048, 1, False),
    "unmanaged_switch": ("port{n}", None, None, False),
    "external_connector": ("port", None, None, False),
}
GIB = 1024**3


class SimError(Exception):
    """A refusal rendered as CML's `{"code", "description"}` error body."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


@dataclass
class HostConfig:
    slow_seconds: float = 0.0
    unreachable: bool = False
    reject_credentials: bool = False


@dataclass
class SimUser:
    id: str
    username: str
    fullname: str
    password: str
    admin: bool
    created: datetime


@dataclass
class SimInterface:
    id: str
    label: str
    type: str
    slot: int | None
    mac_address: str | None
    state: str = "DEFINED_ON_CORE"


@dataclass
class SimNode:
    id: str
    label: str
    node_definition: str
    x: int
    y: int
    ram: int | None
    cpus: int | None
    configuration: str | None = None
    interfaces: list[SimInterface] = field(default_factory=list)
    state: str = "DEFINED_ON_CORE"
    compute_id: str | None = None

    def add_interface(self, iface_id: str, mac: str | None) -> SimInterface:
        """Append the next interface the node definition would create."""
        pattern, _, _, has_loopback = NODE_DEFINITIONS.get(self.node_definition, ("eth{n}", None, None, False))
        if has_loopback and not self.interfaces:
            iface = SimInterface(iface_id, "Loopback0", "loopback", None, None)
        else:
            slot = sum(1 for i in self.interfaces if i.type == "physical")
            iface = SimInterface(iface_id, pattern.format(n=slot, n2=slot + 2), "physical", slot, mac)
        self.interfaces.append(iface)
        return iface

    def free_physical_interface(self, used: set[str]) -> SimInterface | None:
        return next((i for i in self.interfaces if i.type == "physical" and i.id not in used), None)


@dataclass
class SimLink:
    id: str
    node_a: str
    node_b: str
    interface_a: str
    interface_b: str
    label: str
    state: str = "DEFINED_ON_CORE"


@dataclass
class SimLab:
    id: str
    title: str
    description: str
    notes: str
    owner: SimUser
    created: datetime
    modified: datetime
    state: str = "DEFINED_ON_CORE"
    nodes: dict[str, SimNode] = field(default_factory=dict)
    links: dict[str, SimLink] = field(default_factory=dict)

    def used_interfaces(self) -> set[str]:
        return {i for link in self.links.values() for i in (link.interface_a, link.interface_b)}


@dataclass
class SimLicense:
    kind: str
    is_enterprise: bool
    smart_account: str | None = None
    virtual_account: str | None = None
    registered_at: datetime | None = None
    expires: datetime | None = None
    failure: str | None = None


@dataclass(frozen=True)
class SimEvent:
    category: str
    timestamp: datetime
    data: dict[str, Any]


@dataclass
class Compute:
    id: str
    hostname: str
    is_controller: bool
    cpu_count: int
    memory_total: int
    disk_total: int
    base_cpu_percent: float
    base_memory_used: int
    disk_used: int


@dataclass
class SimHost:
    key: str
    created_at: datetime
    version: str
    product_uuid: str
    phase: float  # per-host offset so a fleet's CPU curves do not move in lockstep
    computes: list[Compute]
    users: dict[str, SimUser]
    labs: dict[str, SimLab]
    license: SimLicense
    telemetry: deque[SimEvent]
    config: HostConfig = field(default_factory=HostConfig)
    tokens: dict[str, str] = field(default_factory=dict)  # token -> user id
    auth_count: int = 0
    request_count: int = 0
    inflight: int = 0
    max_inflight: int = 0

    # -- users and tokens ---------------------------------------------------------------------------------

    def authenticate(self, username: str, password: str) -> str:
        user = next((u for u in self.users.values() if u.username == username), None)
        if self.config.reject_credentials or user is None or not secrets.compare_digest(user.password, password):
            raise SimError(403, "Authentication failed!")
        header = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"  # {"alg":"HS256","typ":"JWT"}
        token = f"{header}.{secrets.token_urlsafe(24)}.{secrets.token_urlsafe(32)}"
        self.tokens[token] = user.id
        self.auth_count += 1
        return token

    def user_for_token(self, token: str) -> SimUser | None:
        user_id = self.tokens.get(token)
        return self.users.get(user_id) if user_id else None

    def invalidate_tokens(self) -> None:
        self.tokens.clear()

    def add_user(self, username: str, password: str, *, fullname: str, admin: bool, now: datetime) -> SimUser:
        if any(u.username == username for u in self.users.values()):
            raise SimError(422, f"User already exists: {username}")
        user = SimUser(str(uuid.uuid4()), username, fullname, password, admin, now)
        self.users[user.id] = user
        return user

    # -- labs ---------------------------------------------------------------------------------------------

    def lab(self, lab_id: str) -> SimLab:
        try:
            return self.labs[lab_id]
        except KeyError:
            raise SimError(404, f"Lab not found: {lab_id}") from None

    def create_lab(self, owner: SimUser, now: datetime, title: str | None, description: str, notes: str) -> SimLab:
        title = title or f"Lab at {now:%a %H:%M %p}"
        lab = SimLab(str(uuid.uuid4()), title[:64], description, notes, owner, now, now)
        self.labs[lab.id] = lab
        return lab

    def start_lab(self, lab: SimLab, user: SimUser, now: datetime) -> None:
        for index, node in enumerate(lab.nodes.values()):
            # Switches and connectors have no VM to boot, so CML never reports them BOOTED.
            node.state = "BOOTED" if node.ram else "STARTED"
            node.compute_id = self.computes[index % len(self.computes)].id
        self._set_element_states(lab, "STARTED")
        lab.state = "STARTED"
        lab.modified = now
        self.add_event("start_lab", {"lab_id": lab.id, "user_id": user.id, "node_count": len(lab.nodes)}, now)

    def stop_lab(self, lab: SimLab, user: SimUser, now: datetime) -> None:
        if lab.state == "DEFINED_ON_CORE":
            return  # nothing allocated, nothing to stop: CML treats this as a no-op
        for node in lab.nodes.values():
            node.state = "STOPPED"
        self._set_element_states(lab, "STOPPED")
        lab.state = "STOPPED"
        lab.modified = now
        self.add_event("stop_lab", {"lab_id": lab.id, "user_id": user.id, "node_count": len(lab.nodes)}, now)

    def wipe_lab(self, lab: SimLab, user: SimUser, now: datetime) -> None:
        if lab.state == "STARTED":
            raise SimError(400, f"Lab {lab.id} is running. The lab must be stopped before it can be wiped.")
        for node in lab.nodes.values():
            node.state = "DEFINED_ON_CORE"
            node.compute_id = None
            self.add_event("wipe_node", {"lab_id": lab.id, "node_id": node.id, "user_id": user.id}, now)
        self._set_element_states(lab, "DEFINED_ON_CORE")
        lab.state = "DEFINED_ON_CORE"
        lab.modified = now

    def delete_lab(self, lab: SimLab) -> None:
        if lab.state != "DEFINED_ON_CORE":
            raise SimError(
                400,
                f"Lab {lab.id} is {lab.state}: it must be stopped and wiped before it can be removed.",
            )
        del self.labs[lab.id]

    @staticmethod
    def _set_element_states(lab: SimLab, state: str) -> None:
        for link in lab.links.values():
            link.state = state
        for node in lab.nodes.values():
            for iface in node.interfaces:
                iface.state = state

    # -- licensing ----------------------------------------------------------------------------------------

    def register_license(self, token: str, reregister: bool, now: datetime) -> None:
        if self.license.kind == "registered" and not reregister:
            raise SimError(409, "The product is already registered. Request reregistration to register again.")
        self.license.failure = None
        if token.lower().startswith("invalid"):
            # Real controllers accept the request, then fail asynchronously; the status shows the failure.
            self.license.kind = "invalid"
            self.license.failure = "The idtoken is invalid or has expired."
            return
        digest = hashlib.sha256(token.encode()).hexdigest()
        self.license.kind = "registered"
        self.license.smart_account = f"SA-{digest[:6]}"
        self.license.virtual_account = "CML-Fleet"
        self.license.registered_at = now
        self.license.expires = now + timedelta(days=365)

    def deregister_license(self) -> None:
        if self.license.kind not in ("registered", "invalid"):
            raise SimError(400, "The product has already been deregistered from Smart Software Licensing.")
        self.license = SimLicense("unregistered", self.license.is_enterprise)

    # -- telemetry ----------------------------------------------------------------------------------------

    def add_event(self, category: str, data: dict[str, Any], timestamp: datetime) -> None:
        self.telemetry.append(SimEvent(category, timestamp, data))

    def running_nodes(self) -> list[SimNode]:
        return [n for lab in self.labs.values() for n in lab.nodes.values() if n.state in RUNNING_NODE_STATES]


def _mac(rng: random.Random) -> str:
    return "52:54:00:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(3))


def add_node(
    lab: SimLab,
    label: str,
    definition: str,
    position: tuple[int, int],
    new_id: Callable[[], str],
    rng: random.Random | None = None,
) -> SimNode:
    """Add a node; with `rng`, also the interfaces (with MACs) the node definition would create."""
    _, ram, cpus, _ = NODE_DEFINITIONS.get(definition, ("eth{n}", None, None, False))
    node = SimNode(new_id(), label, definition, *position, ram, cpus, configuration=f"hostname {label}")
    if rng is not None:
        for _ in range(2 if definition == "external_connector" else 4):
            node.add_interface(new_id(), _mac(rng))
    lab.nodes[node.id] = node
    return node


def connect(lab: SimLab, a: SimNode, b: SimNode, new_id: Callable[[], str]) -> SimLink | None:
    used = lab.used_interfaces()
    iface_a, iface_b = a.free_physical_interface(used), b.free_physical_interface(used)
    if iface_a is None or iface_b is None or a is b:
        return None
    link = SimLink(
        new_id(), a.id, b.id, iface_a.id, iface_b.id, f"{a.label}-{iface_a.label}<->{b.label}-{iface_b.label}"
    )
    lab.links[link.id] = link
    return link
