"""CML 2.9 endpoints for a lab's elements: nodes (create, read, change, start, stop, wipe, remove), interfaces
and links, and the convergence checks that virl2-client's `wait=True` polls."""

from __future__ import annotations

from starlette.responses import Response

from cml_cloud_manager.cml.simulator import payloads
from cml_cloud_manager.cml.simulator.calls import Call, json_response, no_content
from cml_cloud_manager.cml.simulator.state import SimError, SimLab, SimNode
from cml_cloud_manager.cml.simulator.topology import new_node, update_node


def _lab(call: Call) -> SimLab:
    return call.host.lab(call.lab_id)


def _node(call: Call) -> tuple[SimLab, SimNode]:
    lab = _lab(call)
    return lab, lab.node(call.path("node_id"))


def lab_converged(call: Call) -> Response:
    return json_response(_lab(call).converged(call.now))


# -- nodes --------------------------------------------------------------------------------------------------


def list_nodes(call: Call) -> Response:
    lab = _lab(call)
    if call.flag("data"):
        return json_response([payloads.node_data(lab, node) for node in lab.nodes.values()])
    return json_response(list(lab.nodes))


def add_node(call: Call) -> Response:
    lab = _lab(call)
    node = new_node(lab, call.json(), populate_interfaces=call.flag("populate_interfaces"))
    lab.derive_states()
    lab.modified = call.now
    return json_response({"id": node.id})


def get_node(call: Call) -> Response:
    lab, node = _node(call)
    with_configuration = not call.flag("exclude_configurations")
    return json_response(payloads.node_data(lab, node, with_configuration=with_configuration))


def patch_node(call: Call) -> Response:
    lab, node = _node(call)
    update_node(node, call.json())
    lab.modified = call.now
    return json_response(node.id)


def delete_node(call: Call) -> Response:
    lab, node = _node(call)
    call.host.delete_node(lab, node, call.now)
    return no_content()


def node_state(call: Call) -> Response:
    _, node = _node(call)
    return json_response({"id": node.id, "state": node.state})


def start_node(call: Call) -> Response:
    lab, node = _node(call)
    call.host.start_node(lab, node, call.user, call.now)
    return no_content()


def stop_node(call: Call) -> Response:
    lab, node = _node(call)
    call.host.stop_node(lab, node, call.user, call.now)
    return no_content()


def wipe_node(call: Call) -> Response:
    lab, node = _node(call)
    call.host.wipe_node(lab, node, call.user, call.now)
    return no_content()


def node_converged(call: Call) -> Response:
    _, node = _node(call)
    return json_response(node.converged(call.now))


# -- interfaces ---------------------------------------------------------------------------------------------


def list_interfaces(call: Call) -> Response:
    lab = _lab(call)
    if call.flag("data"):
        used = lab.used_interfaces()
        body = [payloads.interface(lab, n, i, used) for n in lab.nodes.values() for i in n.interfaces]
        return json_response(body)
    return json_response([i.id for n in lab.nodes.values() for i in n.interfaces])


def add_interface(call: Call) -> Response:
    """Without a slot, the node's next interface; with one, every missing interface up to it, as a list."""
    lab, body = _lab(call), call.json()
    if not isinstance(body, dict) or not isinstance(body.get("node"), str):
        raise SimError(422, 'The body must be a JSON object naming the node: {"node": <node id>, "slot": <n>}.')
    slot = body.get("slot")
    if slot is not None and (isinstance(slot, bool) or not isinstance(slot, int)):
        raise SimError(422, "slot must be an integer.")
    node = lab.node(body["node"])
    created = call.host.add_interfaces(lab, node, slot, call.now)
    used = lab.used_interfaces()
    answer = [payloads.interface(lab, node, iface, used) for iface in created]
    return json_response(answer[0] if slot is None else answer)


# -- links --------------------------------------------------------------------------------------------------


def list_links(call: Call) -> Response:
    lab = _lab(call)
    if call.flag("data"):
        return json_response([payloads.link(lab, link) for link in lab.links.values()])
    return json_response(list(lab.links))


def add_link(call: Call) -> Response:
    lab, body = _lab(call), call.json()
    ends = (body.get("src_int"), body.get("dst_int")) if isinstance(body, dict) else (None, None)
    if not all(isinstance(end, str) for end in ends):
        raise SimError(422, 'A link needs the interfaces it connects: {"src_int": <id>, "dst_int": <id>}.')
    link = call.host.add_link(lab, str(ends[0]), str(ends[1]), call.now)
    return json_response(payloads.link(lab, link))


def get_link(call: Call) -> Response:
    lab = _lab(call)
    return json_response(payloads.link(lab, lab.link(call.path("link_id"))))


def delete_link(call: Call) -> Response:
    lab = _lab(call)
    call.host.delete_link(lab, lab.link(call.path("link_id")), call.now)
    return no_content()
