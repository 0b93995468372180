"""Topology YAML as CML imports and exports it, and node creation from API bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import yaml

from cml_cloud_manager.cml.simulator.payloads import EXPORT_VERSION
from cml_cloud_manager.cml.simulator.state import (
    NODE_DEFINITIONS,
    SimError,
    SimHost,
    SimLab,
    SimLink,
    SimNode,
    SimUser,
    add_node,
)

# Hardware fields with their ranges in CML's schema; null means the node definition's default.
LIMITS = (
    ("ram", 1, 1048576),
    ("cpus", 0, 128),
    ("cpu_limit", 20, 100),
    ("data_volume", 0, 4096),
    ("boot_disk_size", 0, 4096),
)
HARDWARE = frozenset({"image_definition", *(name for name, _, _ in LIMITS)})
TOPOLOGY_VERSIONS = ("0.0.1", "0.0.2", "0.0.3", "0.0.4", "0.0.5", "0.1.0", "0.2.0", "0.2.1", "0.2.2", "0.3.0")


# NodeCreate's fields; those in HARDWARE change what CML allocates, so a running node refuses them.
NODE_FIELDS = frozenset(
    {"label", "node_definition", "x", "y", "configuration", "tags", "hide_links", "parameters", *HARDWARE}
)


def new_node(lab: SimLab, body: Any, *, populate_interfaces: bool) -> SimNode:
    """A node from a NodeCreate body; interfaces only on request, as CML does."""
    fields = node_fields(body)
    if "label" not in fields or "node_definition" not in fields:
        raise SimError(422, "A node needs a label and a node_definition.")
    position = (fields.pop("x", 0), fields.pop("y", 0))
    node = add_node(lab, fields.pop("label"), fields.pop("node_definition"), position, _uuid4)
    _apply(node, fields)
    if populate_interfaces:
        for _ in range(4):
            node.add_interface(_uuid4(), None)
    return node


def update_node(node: SimNode, body: Any) -> None:
    """Apply a node PATCH body."""
    fields = node_fields(body)
    definition = fields.pop("node_definition", node.node_definition)
    if definition != node.node_definition:
        raise SimError(400, f"The node definition of node {node.id} cannot be changed.")
    if fields.keys() & HARDWARE:
        node.require_unlocked(", ".join(sorted(fields.keys() & HARDWARE)))
    _apply(node, fields)


def node_fields(body: Any) -> dict[str, Any]:
    """The node fields of a request body, checked as CML's schema checks them (422 naming the field)."""
    if not isinstance(body, dict):
        raise SimError(422, "The body must be a JSON object with node fields.")
    unknown = sorted(set(body) - NODE_FIELDS)
    if unknown:
        raise SimError(
            422, f"Unknown node fields: {', '.join(unknown)}. Known fields: {', '.join(sorted(NODE_FIELDS))}."
        )
    fields = dict(body)
    for name, low, high in (("x", -15000, 15000), ("y", -15000, 15000)):
        if name in fields:
            fields[name] = _integer(name, fields[name], low, high)
    for name, low, high in LIMITS:
        if fields.get(name) is not None:
            fields[name] = _integer(name, fields[name], low, high)
    for name in ("label", "node_definition"):
        if name in fields and not (isinstance(fields[name], str) and 1 <= len(fields[name]) <= 128):
            raise SimError(422, f"{name} must be a string of 1 to 128 characters.")
    if fields.get("image_definition") is not None and not isinstance(fields["image_definition"], str):
        raise SimError(422, "image_definition must be a string or null.")
    if "tags" in fields and not (isinstance(fields["tags"], list) and all(isinstance(t, str) for t in fields["tags"])):
        raise SimError(422, "tags must be a list of strings.")
    if "hide_links" in fields and not isinstance(fields["hide_links"], bool):
        raise SimError(422, "hide_links must be true or false.")
    if "parameters" in fields and not isinstance(fields["parameters"], dict):
        raise SimError(422, "parameters must be an object.")
    if "configuration" in fields:
        fields["configuration"] = _configuration(fields["configuration"])
    return fields


def _apply(node: SimNode, fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        setattr(node, name, value)


def _integer(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SimError(422, f"{name} must be an integer from {low} to {high}.")
    return value


def _configuration(value: Any) -> str | None:
    """CML takes a node configuration as text or as a list of named files; the simulator keeps the main one."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(f, dict) and isinstance(f.get("content"), str) for f in value):
        return str(value[0]["content"]) if value else None
    raise SimError(422, "configuration must be text or a list of {name, content} objects.")


def export_yaml(item: SimLab) -> str:
    """The lab as a CML topology file: short element ids (n0, i0, l0) instead of UUIDs."""
    node_ids = {node.id: f"n{index}" for index, node in enumerate(item.nodes.values())}
    iface_ids = {i.id: f"i{index}" for node in item.nodes.values() for index, i in enumerate(node.interfaces)}
    document = {
        "lab": {
            "title": item.title,
            "description": item.description,
            "notes": item.notes,
            "version": EXPORT_VERSION,
        },
        "nodes": [
            {
                "id": node_ids[node.id],
                "label": node.label,
                "node_definition": node.node_definition,
                "x": node.x,
                "y": node.y,
                "ram": node.ram,
                "cpus": node.cpus,
                "tags": list(node.tags),
                "configuration": [{"name": "Main", "content": node.configuration}],
                "interfaces": [
                    {
                        "id": iface_ids[i.id],
                        "label": i.label,
                        "type": i.type,
                        **({"slot": i.slot} if i.type == "physical" else {}),
                    }
                    for i in node.interfaces
                ],
            }
            for node in item.nodes.values()
        ],
        "links": [
            {
                "id": f"l{index}",
                "n1": node_ids[link.node_a],
                "n2": node_ids[link.node_b],
                "i1": iface_ids[link.interface_a],
                "i2": iface_ids[link.interface_b],
                "label": link.label,
            }
            for index, link in enumerate(item.links.values())
        ],
        "annotations": [],
    }
    return yaml.safe_dump(document, sort_keys=False)


def import_topology(
    host: SimHost, text: str, title: str | None, owner: SimUser, now: datetime
) -> tuple[SimLab, list[str]]:
    """Create a lab from topology YAML (or JSON), re-keying every element with fresh UUIDs."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SimError(400, f"Import failed: the topology is not valid YAML: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("lab"), dict):
        raise SimError(400, "Import failed: the topology needs a 'lab' section.")
    meta = document["lab"]
    if str(meta.get("version")) not in TOPOLOGY_VERSIONS:
        raise SimError(400, f"Import failed: unsupported topology schema version {meta.get('version')!r}.")
    warnings: list[str] = []
    item = host.create_lab(
        owner,
        now,
        title or (str(meta["title"]) if meta.get("title") else None),
        str(meta.get("description") or ""),
        str(meta.get("notes") or ""),
    )
    try:
        _import_elements(item, document, warnings)
    except (SimError, KeyError, TypeError, ValueError, AttributeError) as exc:
        del host.labs[item.id]
        description = exc.description if isinstance(exc, SimError) else f"malformed element: {exc!r}"
        raise SimError(400, f"Import failed: {description}") from None
    return item, warnings


def _import_elements(item: SimLab, document: dict[str, Any], warnings: list[str]) -> None:
    node_ids: dict[str, str] = {}
    iface_ids: dict[tuple[str, str], str] = {}
    for raw in document.get("nodes") or []:
        definition = str(raw["node_definition"])
        if definition not in NODE_DEFINITIONS:
            warnings.append(f"Node definition `{definition}` is not known to this simulator.")
        node = add_node(item, str(raw["label"]), definition, (int(raw.get("x", 0)), int(raw.get("y", 0))), _uuid4)
        config = raw.get("configuration")
        node.configuration = config[0].get("content") if isinstance(config, list) and config else config
        node.tags = [str(tag) for tag in raw.get("tags") or []]
        node_ids[str(raw["id"])] = node.id
        for raw_iface in raw.get("interfaces") or []:
            if raw_iface["type"] not in ("physical", "loopback"):
                raise SimError(400, f"interface {raw_iface['id']!r} has unknown type {raw_iface['type']!r}")
            iface = node.add_interface(_uuid4(), None)
            iface.label, iface.type = str(raw_iface.get("label") or iface.label), raw_iface["type"]
            iface.slot = int(raw_iface.get("slot", iface.slot)) if iface.type == "physical" else None
            iface_ids[(str(raw["id"]), str(raw_iface["id"]))] = iface.id
    for raw in document.get("links") or []:
        n1, n2 = str(raw["n1"]), str(raw["n2"])
        try:
            a, b = node_ids[n1], node_ids[n2]
            i1, i2 = iface_ids[(n1, str(raw["i1"]))], iface_ids[(n2, str(raw["i2"]))]
        except KeyError as exc:
            raise SimError(400, f"link {raw.get('id')!r} refers to unknown element {exc.args[0]!r}") from None
        link = SimLink(_uuid4(), a, b, i1, i2, str(raw.get("label") or f"{n1}-{n2}"))
        item.links[link.id] = link


def _uuid4() -> str:
    return str(uuid.uuid4())
