"""Deterministic seeding of simulated CML hosts: a host's labs, license and history follow from its key.

Absolute times are relative to the moment of seeding, so a fresh host always has a recent-looking past.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from cml_cloud_manager.cml.simulator.state import (
    ADMIN_ID,
    GIB,
    Compute,
    SimHost,
    SimLab,
    SimLicense,
    SimUser,
    add_node,
    connect,
)

CML_VERSIONS = ("2.9.0+build.3", "2.9.1+build.12")
LICENSE_KINDS = ("registered", "evaluation", "unregistered", "expired", "invalid")
LAB_TITLES = (
    "CCNA Study Lab",
    "OSPF Multi-Area",
    "BGP Peering",
    "EIGRP Basics",
    "VLAN Trunking",
    "ACL Security Lab",
    "DMVPN Hub and Spoke",
    "MPLS L3VPN",
)


def seed_host(key: str, now: datetime, *, username: str, password: str, max_events: int) -> SimHost:
    """Build a host whose labs, license and history depend only on `key` (times are relative to `now`)."""
    rng = random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big"))

    def new_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    admin = SimUser(ADMIN_ID, username, "Administrator", password, True, now - timedelta(days=90))
    users = {admin.id: admin}
    for n in range(1, rng.randint(2, 3) + 1):
        student = SimUser(new_id(), f"student{n}", f"Student {n}", password, False, now - timedelta(days=30))
        users[student.id] = student

    computes = [
        Compute(
            id=new_id(),
            hostname="cml-controller" if index == 0 else f"cml-compute-{index}",
            is_controller=index == 0,
            cpu_count=rng.choice((16, 32, 48)),
            memory_total=rng.choice((64, 128, 256)) * GIB,
            disk_total=rng.choice((512, 1024)) * GIB,
            base_cpu_percent=rng.uniform(2.0, 9.0),
            base_memory_used=rng.randint(4, 10) * GIB,
            disk_used=rng.randint(40, 200) * GIB,
        )
        for index in range(rng.choice((1, 1, 1, 2, 3)))
    ]
    kind = rng.choices(LICENSE_KINDS, weights=(50, 20, 15, 10, 5))[0]
    license_ = SimLicense(kind, is_enterprise=rng.random() < 0.7)
    if kind in ("registered", "expired", "invalid"):
        license_.smart_account, license_.virtual_account = f"SA-{key[:12]}", "CML-Fleet"
        license_.registered_at = now - timedelta(days=rng.randint(30, 300))
        license_.expires = now + timedelta(days=rng.randint(30, 300) if kind != "expired" else -rng.randint(1, 30))
    if kind == "evaluation":
        license_.expires = now + timedelta(days=rng.randint(1, 30))
    if kind == "invalid":
        license_.failure = "Communication with Smart Software Manager failed."

    host = SimHost(
        key=key,
        created_at=now,
        version=rng.choice(CML_VERSIONS),
        product_uuid=new_id(),
        phase=rng.uniform(0, 6.283),
        computes=computes,
        users=users,
        labs={},
        license=license_,
        telemetry=deque(maxlen=max_events),
    )
    _seed_labs(host, rng, new_id, now)
    _seed_history(host, rng, now)
    return host


def _seed_labs(host: SimHost, rng: random.Random, new_id: Callable[[], str], now: datetime) -> None:
    owners = list(host.users.values())
    for title in rng.sample(LAB_TITLES, rng.randint(1, 4)):
        created = now - timedelta(days=rng.uniform(1, 60))
        lab = SimLab(new_id(), title, f"{title} topology", "", rng.choice(owners), created, created)
        definitions = [rng.choice(("iosv", "iosv", "iosvl2", "alpine", "ubuntu")) for _ in range(rng.randint(2, 6))]
        nodes = [
            add_node(lab, f"{d}-{i}", d, (100 * i, rng.randint(-200, 200)), new_id, rng)
            for i, d in enumerate(definitions)
        ]
        for a, b in itertools.pairwise(nodes):
            connect(lab, a, b, new_id)
        if len(nodes) > 3 and rng.random() < 0.5:
            connect(lab, nodes[0], nodes[-1], new_id)
        host.labs[lab.id] = lab
        state = rng.choices(("DEFINED_ON_CORE", "STOPPED", "STARTED"), weights=(3, 2, 3))[0]
        if state != "DEFINED_ON_CORE":
            host.start_lab(lab, lab.owner, created)
        if state == "STOPPED":
            host.stop_lab(lab, lab.owner, created)
        lab.modified = created + (now - created) * rng.random()
    host.telemetry.clear()  # seeding's own lifecycle events are replaced by a coherent history


def _seed_history(host: SimHost, rng: random.Random, now: datetime) -> None:
    """Six hours of system noise plus user activity; about half the hosts look idle for hours."""
    idle = rng.random() < 0.5
    last_activity = now - (timedelta(hours=rng.uniform(2, 12)) if idle else timedelta(minutes=rng.uniform(1, 20)))
    events: list[tuple[datetime, str, dict[str, Any]]] = []
    for step in range(12):
        at = now - timedelta(minutes=30 * step + rng.uniform(0, 5))
        events.append((at, "system_stats", {"cpu_percent": round(rng.uniform(2, 40), 1)}))
        events.append((at, "running_nodes", {"count": len(host.running_nodes())}))
        # The control plane polls as admin; CML records that as user activity of the admin id.
        events.append((at, "user_activity", {"user_id": ADMIN_ID, "endpoint": "/api/v0/system_stats"}))
    students = [u for u in host.users.values() if not u.admin] or list(host.users.values())
    for lab in host.labs.values():
        if lab.state == "DEFINED_ON_CORE":
            continue
        started = last_activity - timedelta(minutes=rng.uniform(5, 90))
        user_id = lab.owner.id
        events.append((started, "start_lab", {"lab_id": lab.id, "user_id": user_id, "node_count": len(lab.nodes)}))
        if lab.state == "STOPPED":
            events.append(
                (
                    last_activity - timedelta(minutes=rng.uniform(0, 4)),
                    "stop_lab",
                    {"lab_id": lab.id, "user_id": user_id},
                )
            )
    events.append((last_activity, "user_activity", {"user_id": rng.choice(students).id, "endpoint": "/api/v0/labs"}))
    for at, category, data in sorted(events, key=lambda e: e[0]):
        host.add_event(category, data, at)
