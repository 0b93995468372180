"""CML 2.9 response bodies for simulated hosts.

Shapes follow CML 2.9's published OpenAPI definition; the tests keep a subset of it and validate the bodies
against it.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from cml_cloud_manager.cml.simulator.state import (
    GIB,
    NodeDefinition,
    SimHost,
    SimInterface,
    SimLab,
    SimLink,
    SimNode,
    SimUser,
)

EXPORT_VERSION = "0.3.0"
SSMS_URL = "https://smartreceiver.cisco.com/licservice/license"
MIB = 1024**2


def iso(moment: datetime) -> str:
    return moment.isoformat()


def telemetry_timestamp(moment: datetime) -> str:
    # Controllers write telemetry times with milliseconds and a Z suffix.
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def error_body(status: int, description: str) -> dict[str, Any]:
    return {"code": status, "description": description}


def system_information(host: SimHost) -> dict[str, Any]:
    return {
        "version": host.version,
        "ready": True,
        "allow_ssh_pubkey_auth": False,
        "oui": "52:54:00:00:00:00",
    }


def system_health(host: SimHost) -> dict[str, Any]:
    computes = {
        compute.id: {
            "kvm_vmx_enabled": True,
            "enough_cpus": True,
            "lld_connected": True,
            "lld_synced": True,
            "libvirt": True,
            "fabric": True,
            "device_mux": True,
            "refplat_images_available": True,
            "docker_shim": True,
            "valid": True,
            "admission_state": "READY",
            "is_controller": compute.is_controller,
            "hostname": compute.hostname,
        }
        for compute in host.computes
    }
    return {
        "valid": True,
        "computes": computes,
        "is_licensed": host.license.kind in ("registered", "evaluation"),
        "is_enterprise": host.license.is_enterprise,
        "controller": {"core_connected": True, "nodes_loaded": True, "images_loaded": True, "valid": True},
    }


def system_stats(host: SimHost, now: datetime) -> dict[str, Any]:
    """Per-compute load from the running nodes plus a slow sine drift, so values move between polls."""
    t = now.timestamp()
    computes: dict[str, Any] = {}
    totals = {"count": 0, "busy": 0.0, "mem_used": 0, "mem_total": 0, "disk_used": 0, "disk_total": 0}
    running = host.running_nodes()
    for index, compute in enumerate(host.computes):
        nodes = [n for n in running if n.compute_id == compute.id]
        wave = math.sin(2 * math.pi * t / 300 + host.phase + index)
        cpu_percent = min(100.0, max(0.5, compute.base_cpu_percent + 2.5 * len(nodes) + 4.0 * wave))
        ram_mib = sum(n.allocated[0] for n in nodes)
        memory_used = min(
            compute.memory_total,
            compute.base_memory_used + ram_mib * MIB + int(0.01 * compute.memory_total * wave),
        )
        disk_used = compute.disk_used + len(nodes) * 2 * GIB
        computes[compute.id] = {
            "hostname": compute.hostname,
            "is_controller": compute.is_controller,
            "stats": {
                "cpu": {
                    "count": compute.cpu_count,
                    "percent": round(cpu_percent, 2),
                    "model": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
                    "predicted": compute.cpu_count,
                    "load": [round(cpu_percent * compute.cpu_count / 100, 2)] * 3,
                },
                "memory": _usage(memory_used, compute.memory_total),
                "disk": _usage(disk_used, compute.disk_total),
                "dominfo": {
                    "total_nodes": len(nodes),
                    "total_orphans": 0,
                    "running_nodes": len(nodes),
                    "running_orphans": 0,
                    "allocated_cpus": sum(n.allocated[1] for n in nodes),
                    "allocated_memory": ram_mib,
                },
            },
        }
        totals["count"] += compute.cpu_count
        totals["busy"] += cpu_percent * compute.cpu_count
        totals["mem_used"] += memory_used
        totals["mem_total"] += compute.memory_total
        totals["disk_used"] += disk_used
        totals["disk_total"] += compute.disk_total
    controller = host.computes[0]
    return {
        "computes": computes,
        "all": {
            "cpu": {"count": totals["count"], "percent": round(totals["busy"] / max(1, totals["count"]), 2)},
            "memory": _usage(int(totals["mem_used"]), int(totals["mem_total"])),
            "disk": _usage(int(totals["disk_used"]), int(totals["disk_total"])),
        },
        "controller": {"disk": _usage(controller.disk_used, controller.disk_total)},
    }


def _usage(used: int, total: int) -> dict[str, int]:
    return {"used": used, "free": total - used, "total": total}


_LICENSE_STATUSES = {
    "registered": ("COMPLETED", "IN_COMPLIANCE"),
    "evaluation": ("UNREGISTERED", "EVAL"),
    "unregistered": ("UNREGISTERED", "NOT_AUTHORIZED"),
    "expired": ("COMPLETED", "AUTHORIZED_EXPIRED"),
    "invalid": ("FAILED", "OUT_OF_COMPLIANCE"),
}


def licensing(host: SimHost) -> dict[str, Any]:
    lic = host.license
    registration_status, authorization_status = _LICENSE_STATUSES[lic.kind]
    registered_at = iso(lic.registered_at) if lic.registered_at else None
    expires = iso(lic.expires) if lic.expires else None
    # An evaluation period ends the authorization; only a registration has its own expiry.
    registration_expires = expires if lic.registered_at else None

    def time_info(status: str | None) -> dict[str, Any]:
        return {
            "succeeded": None if lic.failure else registered_at,
            "attempted": registered_at,
            "scheduled": None,
            "status": status,
            "failure": lic.failure,
            "success": None if lic.failure else "SUCCEEDED",
        }

    product = "CML_Enterprise" if lic.is_enterprise else "CML_Personal"
    return {
        "udi": {"hostname": f"cml-{host.key}"[:64], "product_uuid": host.product_uuid},
        "registration": {
            "status": registration_status,
            "smart_account": lic.smart_account,
            "virtual_account": lic.virtual_account,
            "register_time": time_info("FAILED" if lic.failure else registration_status),
            "renew_time": time_info(None),
            "expires": registration_expires,
        },
        "authorization": {"status": authorization_status, "renew_time": time_info(None), "expires": expires},
        "reservation_mode": False,
        "features": [
            {
                "id": f"regid.2019-10.com.cisco.{product},1.0_{host.product_uuid[:8]}",
                "name": product.replace("_", " "),
                "description": "Cisco Modeling Labs node licenses",
                "version": "1.0",
                "in_use": len(host.running_nodes()),
                "status": authorization_status,
                "min": 0,
                "max": 320 if lic.is_enterprise else 40,
                "minEndDate": None,
                "maxEndDate": None,
            }
        ],
        "product_license": {"active": product, "is_enterprise": lic.is_enterprise},
        "transport": {"proxy": {"server": None, "port": None}, "ssms": SSMS_URL, "default_ssms": SSMS_URL},
    }


def user(host: SimHost, who: SimUser) -> dict[str, Any]:
    return {
        "id": who.id,
        "username": who.username,
        "fullname": who.fullname,
        "description": "",
        "email": "",
        "admin": who.admin,
        "groups": [],
        "associations": [],
        "resource_pool": None,
        "opt_in": None,
        "tour_version": "",
        "created": iso(who.created),
        "modified": iso(who.created),
        "directory_dn": "",
        "labs": [lab.id for lab in host.labs.values() if lab.owner.id == who.id],
        "pubkey_info": None,
    }


def lab(item: SimLab) -> dict[str, Any]:
    return {
        "id": item.id,
        "created": iso(item.created),
        "modified": iso(item.modified),
        "lab_description": item.description,
        "lab_notes": item.notes,
        "lab_title": item.title,
        "owner": item.owner.id,
        "owner_username": item.owner.username,
        "owner_fullname": item.owner.fullname,
        "state": item.state,
        "node_count": len(item.nodes),
        "link_count": len(item.links),
        "groups": [],
        "effective_permissions": ["lab_admin", "lab_edit", "lab_exec", "lab_view"],
    }


def _node_topology(node: SimNode, *, with_configuration: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": node.id,
        "label": node.label,
        "node_definition": node.node_definition,
        "x": node.x,
        "y": node.y,
        "image_definition": node.image_definition,
        "ram": node.ram,
        "cpus": node.cpus,
        "cpu_limit": node.cpu_limit,
        "data_volume": node.data_volume,
        "boot_disk_size": node.boot_disk_size,
        "hide_links": node.hide_links,
        "tags": list(node.tags),
        "parameters": dict(node.parameters),
        "interfaces": [_interface(node, i) for i in node.interfaces],
    }
    if with_configuration:
        body["configuration"] = [{"name": "Main", "content": node.configuration}]
    return body


def _interface(node: SimNode, iface: SimInterface) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": iface.id,
        "node": node.id,
        "label": iface.label,
        "type": iface.type,
        "mac_address": iface.mac_address,
    }
    if iface.slot is not None:  # loopbacks have no slot, and the schema does not allow null
        body["slot"] = iface.slot
    return body


def topology(item: SimLab, *, with_configuration: bool) -> dict[str, Any]:
    return {
        "lab": {
            "version": EXPORT_VERSION,
            "title": item.title,
            "description": item.description,
            "notes": item.notes,
            "owner": item.owner.id,
        },
        "nodes": [_node_topology(n, with_configuration=with_configuration) for n in item.nodes.values()],
        "links": [link(item, one) for one in item.links.values()],
        "annotations": [],
        "smart_annotations": [],
    }


def link(item: SimLab, one: SimLink) -> dict[str, Any]:
    return {
        "id": one.id,
        "lab_id": item.id,
        "label": one.label,
        "state": one.state,
        "interface_a": one.interface_a,
        "interface_b": one.interface_b,
        "node_a": one.node_a,
        "node_b": one.node_b,
        "link_capture_key": "",
    }


def interface(item: SimLab, node: SimNode, iface: SimInterface, used: set[str]) -> dict[str, Any]:
    """An interface as its own endpoints answer (POST and GET `interfaces`): with its lab, state and link."""
    return {**_interface(node, iface), "lab_id": item.id, "state": iface.state, "is_connected": iface.id in used}


def element_state(item: SimLab) -> dict[str, Any]:
    return {
        "nodes": {n.id: n.state for n in item.nodes.values()},
        "links": {link.id: link.state for link in item.links.values()},
        "interfaces": {i.id: i.state for n in item.nodes.values() for i in n.interfaces},
    }


def node_data(item: SimLab, node: SimNode, *, with_configuration: bool = False) -> dict[str, Any]:
    body = _node_topology(node, with_configuration=with_configuration)
    del body["interfaces"]
    running = node.state in ("STARTED", "BOOTED")
    body |= {
        "lab_id": item.id,
        "state": node.state,
        "boot_progress": "Booted" if node.state == "BOOTED" else ("Booting" if running else "Not running"),
        "compute_id": node.compute_id,
        "iol_app_id": None,
        "resource_pool": None,
        "vnc_key": None,
        "pinned_compute_id": None,
        "serial_consoles": [],
    }
    return body


def lab_tile(item: SimLab) -> dict[str, Any]:
    """A lab as the dashboard (`populate_lab_tiles`) shows it: its details and a sketch of its topology."""
    nodes = [
        {
            "id": n.id,
            "label": n.label,
            "x": n.x,
            "y": n.y,
            "node_definition": n.node_definition,
            "image_definition": n.image_definition,
            "state": n.state,
            "cpus": n.cpus,
            "cpu_limit": n.cpu_limit,
            "ram": n.ram,
            "data_volume": n.data_volume,
            "boot_disk_size": n.boot_disk_size,
        }
        for n in item.nodes.values()
    ]
    links = [
        {"id": one.id, "node_a": one.node_a, "node_b": one.node_b, "state": one.state} for one in item.links.values()
    ]
    return {**lab(item), "topology": {"nodes": nodes, "links": links}}


def node_definition(definition: NodeDefinition) -> dict[str, Any]:
    """The parts of a CML node definition that scripts read: nature, interfaces, UI label, VM size."""
    interfaces = [definition.interface_pattern.format(n=n, n2=n + 2) for n in range(4)]
    return {
        "id": definition.id,
        "schema_version": "0.0.1",
        "general": {"nature": definition.nature, "description": f"{definition.label} (simulated)", "read_only": True},
        "device": {
            "interfaces": {
                "has_loopback_zero": definition.has_loopback,
                "loopback": ["Loopback0"] if definition.has_loopback else [],
                "physical": interfaces,
                "default_count": len(interfaces),
                "serial_ports": 1 if definition.image else 0,
            }
        },
        "ui": {
            "visible": True,
            "label": definition.label,
            "label_prefix": f"{definition.id}-",
            "icon": definition.nature,
            "description": f"{definition.label} (simulated)",
        },
        "sim": {
            "linux_native": {
                "libvirt_domain_driver": "kvm" if definition.image else "none",
                "driver": definition.id,
                "ram": definition.ram,
                "cpus": definition.cpus,
            }
        },
    }


def image_definition(definition: NodeDefinition) -> dict[str, Any]:
    assert definition.image is not None
    return {
        "id": definition.image,
        "node_definition_id": definition.id,
        "label": f"{definition.label} ({definition.image})",
        "description": f"{definition.label} disk image (simulated)",
        "disk_image": f"{definition.image}.qcow2",
        "read_only": True,
        "schema_version": "0.0.1",
    }


def compute_host(host: SimHost, index: int) -> dict[str, Any]:
    compute = host.computes[index]
    return {
        "id": compute.id,
        "hostname": compute.hostname,
        "server_address": f"192.168.255.{index + 1}",
        "is_connector": False,
        "is_simulator": True,
        "is_connected": True,
        "is_synced": True,
        "admission_state": "READY",
        # CML 2.9 lists the nodes deployed there; later versions send node counts instead.
        "nodes": [n.id for n in host.running_nodes() if n.compute_id == compute.id],
    }
