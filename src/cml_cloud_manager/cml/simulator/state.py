"""In-memory state of simulated CML hosts: users and tokens, lab lifecycle, licensing, telemetry.

Plain dicts and dataclasses, no I/O, so one process can hold a thousand hosts. Seeding lives in `seed`,
HTTP bodies in `payloads`, topology YAML in `topology`, the CML endpoints in `api`, serving in `server`.
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


@dataclass(frozen=True)
class NodeDefinition:
    """What the simulator knows of one of CML's node definitions."""

    id: str
    label: str
    nature: str  # CML's `general.nature`
    interface_pattern: str
    ram: int | None  # MiB; None for elements that run no VM
    cpus: int | None
    has_loopback: bool
    image: str | None  # the image definition shipped for it, if it boots one


NODE_DEFINITIONS: dict[str, NodeDefinition] = {
    d.id: d
    for d in (
        NodeDefinition("iosv", "IOSv", "router", "GigabitEthernet0/{n}", 512, 1, True, "iosv-159-3-m9"),
        NodeDefinition("iosvl2", "IOSvL2", "switch", "GigabitEthernet0/{n}", 768, 1, True, "iosvl2-2020"),
        NodeDefinition("alpine", "Alpine", "server", "eth{n}", 512, 1, False, "alpine-3-21-base"),
        NodeDefinition("ubuntu", "Ubuntu", "server", "ens{n2}", 2048, 1, False, "ubuntu-24-04-20250503"),
        NodeDefinition("unmanaged_switch", "Unmanaged Switch", "switch", "port{n}", None, None, False, None),
        NodeDefinition("external_connector", "External Connector", "cloud", "port", None, None, False, None),
    )
}
# Used for node definitions the simulator does not know (an import may name any).
UNKNOWN_DEFINITION = NodeDefinition("unknown", "Unknown", "server", "eth{n}", None, None, False, None)
GIB = 1024**3
MAX_SLOT = 63  # the most interfaces the simulator gives one node, slots 0-63


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
    # States change at once, but a start, stop or wipe is reported converged only this long after it, as a real
    # controller takes a moment. At 1 s or more, virl2-client (which caches element states for 1 s) always
    # reads fresh states after `wait=True`, as it does against a real CML.
    settle_seconds: float = 1.0


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
    image_definition: str | None = None
    cpu_limit: int | None = None
    data_volume: int | None = None
    boot_disk_size: int | None = None
    hide_links: bool = False
    tags: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    settles_at: datetime | None = None  # when the last start/stop/wipe is reported converged

    @property
    def definition(self) -> NodeDefinition:
        return NODE_DEFINITIONS.get(self.node_definition, UNKNOWN_DEFINITION)

    @property
    def running(self) -> bool:
        return self.state in RUNNING_NODE_STATES

    @property
    def allocated(self) -> tuple[int, int]:
        """(RAM MiB, vCPUs) it takes while running; null fields mean the node definition's defaults."""
        ram = self.ram if self.ram is not None else self.definition.ram
        cpus = self.cpus if self.cpus is not None else self.definition.cpus
        return ram or 0, cpus or 0

    def converged(self, now: datetime) -> bool:
        return self.settles_at is None or now >= self.settles_at

    def require_unlocked(self, change: str) -> None:
        """CML locks a node's physical configuration (interfaces, RAM, CPUs, image) while it runs."""
        if self.running:
            raise SimError(
                400,
                f"Physical configuration of node {self.id} is locked while it is {self.state}: "
                f"stop it to change {change}.",
            )

    def add_interface(self, iface_id: str, mac: str | None) -> SimInterface:
        """Append the next interface the node definition would create."""
        if self.definition.has_loopback and not self.interfaces:
            iface = SimInterface(iface_id, "Loopback0", "loopback", None, None, _element_state(self.state))
            self.interfaces.append(iface)
            return iface
        return self.add_physical_interface(iface_id, mac)

    def add_physical_interface(self, iface_id: str, mac: str | None) -> SimInterface:
        slot = sum(1 for i in self.interfaces if i.type == "physical")
        label = self.definition.interface_pattern.format(n=slot, n2=slot + 2)
        iface = SimInterface(iface_id, label, "physical", slot, mac, _element_state(self.state))
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

    def node(self, node_id: str) -> SimNode:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise SimError(404, f"Node not found: {node_id}") from None

    def link(self, link_id: str) -> SimLink:
        try:
            return self.links[link_id]
        except KeyError:
            raise SimError(404, f"Link not found: {link_id}") from None

    def interface(self, iface_id: str) -> tuple[SimNode, SimInterface]:
        for node in self.nodes.values():
            for iface in node.interfaces:
                if iface.id == iface_id:
                    return node, iface
        raise SimError(404, f"Interface not found: {iface_id}")

    def converged(self, now: datetime) -> bool:
        return all(node.converged(now) for node in self.nodes.values())

    def derive_states(self) -> None:
        """Derive link, interface and lab states from the node states, as CML does."""
        for node in self.nodes.values():
            for iface in node.interfaces:
                iface.state = _element_state(node.state)
        for link in self.links.values():
            ends = {self.nodes[link.node_a].state, self.nodes[link.node_b].state}
            if ends <= RUNNING_NODE_STATES:
                link.state = "STARTED"
            elif ends == {"DEFINED_ON_CORE"}:
                link.state = "DEFINED_ON_CORE"
            else:
                link.state = "STOPPED"
        if self.nodes:  # an empty lab keeps the state its last start, stop or wipe gave it
            states = {node.state for node in self.nodes.values()}
            if states & RUNNING_NODE_STATES:
                self.state = "STARTED"
            elif "STOPPED" in states:
                self.state = "STOPPED"
            else:
                self.state = "DEFINED_ON_CORE"


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
        for node in lab.nodes.values():
            if not node.running:
                self._boot(lab, node, now)
        lab.state = "STARTED"
        lab.derive_states()
        lab.modified = now
        self.add_event("start_lab", {"lab_id": lab.id, "user_id": user.id, "node_count": len(lab.nodes)}, now)

    def stop_lab(self, lab: SimLab, user: SimUser, now: datetime) -> None:
        if lab.state == "DEFINED_ON_CORE":
            return  # nothing allocated, nothing to stop: CML treats this as a no-op
        for node in lab.nodes.values():
            if node.state != "DEFINED_ON_CORE":
                self._change(node, "STOPPED", now)
        lab.state = "STOPPED"
        lab.derive_states()
        lab.modified = now
        self.add_event("stop_lab", {"lab_id": lab.id, "user_id": user.id, "node_count": len(lab.nodes)}, now)

    def wipe_lab(self, lab: SimLab, user: SimUser, now: datetime) -> None:
        if lab.state == "STARTED":
            raise SimError(400, f"Lab {lab.id} is running. The lab must be stopped before it can be wiped.")
        for node in lab.nodes.values():
            self._wipe(lab, node, user, now)
        lab.state = "DEFINED_ON_CORE"
        lab.derive_states()
        lab.modified = now

    def delete_lab(self, lab: SimLab) -> None:
        if lab.state != "DEFINED_ON_CORE":
            raise SimError(
                400,
                f"Lab {lab.id} is {lab.state}: it must be stopped and wiped before it can be removed.",
            )
        del self.labs[lab.id]

    # -- nodes, interfaces and links ----------------------------------------------------------------------

    def start_node(self, lab: SimLab, node: SimNode, user: SimUser, now: datetime) -> None:
        if node.running:
            return  # already running: CML answers without doing anything
        self._boot(lab, node, now)
        lab.derive_states()
        lab.modified = now
        self.add_event("start_node", {"lab_id": lab.id, "node_id": node.id, "user_id": user.id}, now)

    def stop_node(self, lab: SimLab, node: SimNode, user: SimUser, now: datetime) -> None:
        if not node.running:
            return
        self._change(node, "STOPPED", now)
        lab.derive_states()
        lab.modified = now
        self.add_event("stop_node", {"lab_id": lab.id, "node_id": node.id, "user_id": user.id}, now)

    def wipe_node(self, lab: SimLab, node: SimNode, user: SimUser, now: datetime) -> None:
        if node.running:
            raise SimError(400, f"Node {node.id} is running. The node must be stopped before it can be wiped.")
        self._wipe(lab, node, user, now)
        lab.derive_states()
        lab.modified = now

    def delete_node(self, lab: SimLab, node: SimNode, now: datetime) -> None:
        if node.state != "DEFINED_ON_CORE":
            raise SimError(
                400, f"Node {node.id} is {node.state}: it must be stopped and wiped before it can be removed."
            )
        ifaces = {i.id for i in node.interfaces}
        for link in [link for link in lab.links.values() if {link.interface_a, link.interface_b} & ifaces]:
            del lab.links[link.id]
        del lab.nodes[node.id]
        lab.derive_states()
        lab.modified = now

    def add_interfaces(self, lab: SimLab, node: SimNode, slot: int | None, now: datetime) -> list[SimInterface]:
        """The next physical interface, or every missing one up to `slot`; returns the ones created."""
        node.require_unlocked("its interfaces")
        count = sum(1 for i in node.interfaces if i.type == "physical")
        last = count if slot is None else slot
        if not 0 <= last <= MAX_SLOT:
            raise SimError(
                400, f"Node {node.id} cannot have an interface in slot {last}: slots go from 0 to {MAX_SLOT}."
            )
        if last < count:  # that slot exists already: CML answers with it
            return [i for i in node.interfaces if i.type == "physical" and i.slot == last]
        rng = random.Random()
        created = [node.add_physical_interface(str(uuid.uuid4()), _mac(rng)) for _ in range(count, last + 1)]
        lab.modified = now
        return created

    def add_link(self, lab: SimLab, src: str, dst: str, now: datetime) -> SimLink:
        (node_a, iface_a), (node_b, iface_b) = lab.interface(src), lab.interface(dst)
        for iface in (iface_a, iface_b):
            if iface.type != "physical":
                raise SimError(400, f"Interface {iface.id} is a {iface.type} interface and cannot be linked.")
            if iface.id in lab.used_interfaces():
                raise SimError(400, f"Interface {iface.id} is already connected.")
        if iface_a is iface_b:
            raise SimError(400, f"An interface cannot be linked to itself: {iface_a.id}.")
        label = f"{node_a.label}-{iface_a.label}<->{node_b.label}-{iface_b.label}"
        link = SimLink(str(uuid.uuid4()), node_a.id, node_b.id, iface_a.id, iface_b.id, label)
        lab.links[link.id] = link
        lab.derive_states()
        lab.modified = now
        return link

    def delete_link(self, lab: SimLab, link: SimLink, now: datetime) -> None:
        if link.state == "STARTED":
            raise SimError(400, f"Link {link.id} is running. Stop one of its nodes before removing it.")
        del lab.links[link.id]
        lab.modified = now

    def _boot(self, lab: SimLab, node: SimNode, now: datetime) -> None:
        # Switches and connectors have no VM to boot, so CML never reports them BOOTED.
        self._change(node, "BOOTED" if node.allocated[0] else "STARTED", now)
        running = sum(1 for n in lab.nodes.values() if n.running) - 1
        node.compute_id = self.computes[running % len(self.computes)].id

    def _wipe(self, lab: SimLab, node: SimNode, user: SimUser, now: datetime) -> None:
        self._change(node, "DEFINED_ON_CORE", now)
        node.compute_id = None
        self.add_event("wipe_node", {"lab_id": lab.id, "node_id": node.id, "user_id": user.id}, now)

    def _change(self, node: SimNode, state: str, now: datetime) -> None:
        node.state = state
        node.settles_at = now + timedelta(seconds=self.config.settle_seconds)

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


def _element_state(node_state: str) -> str:
    """The state of a node's interfaces (and of CML's element-state map) for a node state."""
    if node_state in RUNNING_NODE_STATES:
        return "STARTED"
    return "STOPPED" if node_state == "STOPPED" else "DEFINED_ON_CORE"


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
    known = NODE_DEFINITIONS.get(definition, UNKNOWN_DEFINITION)
    node = SimNode(new_id(), label, definition, *position, known.ram, known.cpus, configuration=f"hostname {label}")
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
