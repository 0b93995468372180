"""CML 2.9 REST endpoints of a simulated host (everything under `/hosts/<key>/api/v0`): system, labs,
licensing, users, telemetry and the catalogue here, a lab's nodes, interfaces and links in `elements`."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime

from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from cml_cloud_manager.cml.simulator import elements, payloads
from cml_cloud_manager.cml.simulator.calls import Call, error_response, host_endpoint, json_response, no_content
from cml_cloud_manager.cml.simulator.state import NODE_DEFINITIONS, SimError, SimHost
from cml_cloud_manager.cml.simulator.topology import export_yaml, import_topology

# -- unauthenticated -----------------------------------------------------------------------------------------


def authenticate(host: SimHost, body: bytes) -> Response:
    try:
        credentials = json.loads(body)
        username, password = str(credentials["username"]), str(credentials["password"])
    except (ValueError, KeyError, TypeError):
        return error_response(422, "The body must be a JSON object with username and password.")
    return json_response(host.authenticate(username, password))


def system_information(host: SimHost, body: bytes) -> Response:
    return json_response(payloads.system_information(host))


# -- authenticated ------------------------------------------------------------------------------------------


def authok(call: Call) -> Response:
    return json_response("OK")


def logout(call: Call) -> Response:
    token = call.request.headers["authorization"][7:].strip()
    if call.flag("clear_all_sessions"):
        for other, user_id in list(call.host.tokens.items()):
            if user_id == call.user.id:
                del call.host.tokens[other]
    call.host.tokens.pop(token, None)
    return json_response(True)


def system_health(call: Call) -> Response:
    return json_response(payloads.system_health(call.host))


def system_stats(call: Call) -> Response:
    return json_response(payloads.system_stats(call.host, call.now))


def list_labs(call: Call) -> Response:
    everyone = call.flag("show_all") and call.user.admin
    return json_response([lab.id for lab in call.host.labs.values() if everyone or lab.owner.id == call.user.id])


def create_lab(call: Call) -> Response:
    body = call.json() or {}
    lab = call.host.create_lab(
        call.user, call.now, body.get("title"), str(body.get("description", "")), str(body.get("notes", ""))
    )
    return json_response(payloads.lab(lab))


def get_lab(call: Call) -> Response:
    return json_response(payloads.lab(call.host.lab(call.lab_id)))


def update_lab(call: Call) -> Response:
    lab, body = call.host.lab(call.lab_id), call.json() or {}
    lab.title = str(body.get("title", lab.title))[:64]
    lab.description = str(body.get("description", lab.description))
    lab.notes = str(body.get("notes", lab.notes))
    lab.modified = call.now
    return json_response(payloads.lab(lab))


def delete_lab(call: Call) -> Response:
    call.host.delete_lab(call.host.lab(call.lab_id))
    return no_content()


def lab_state(call: Call) -> Response:
    return json_response(call.host.lab(call.lab_id).state)


def start_lab(call: Call) -> Response:
    call.host.start_lab(call.host.lab(call.lab_id), call.user, call.now)
    return no_content()


def stop_lab(call: Call) -> Response:
    call.host.stop_lab(call.host.lab(call.lab_id), call.user, call.now)
    return no_content()


def wipe_lab(call: Call) -> Response:
    call.host.wipe_lab(call.host.lab(call.lab_id), call.user, call.now)
    return no_content()


def download_lab(call: Call) -> Response:
    lab = call.host.lab(call.lab_id)
    call.host.add_event("export_lab", {"lab_id": lab.id, "user_id": call.user.id}, call.now)
    # Controllers send the YAML itself even though their schema calls it a JSON string.
    return PlainTextResponse(export_yaml(lab), media_type="application/x-yaml")


def lab_topology(call: Call) -> Response:
    with_configuration = call.request.query_params.get("exclude_configurations", "false").lower() != "true"
    return json_response(payloads.topology(call.host.lab(call.lab_id), with_configuration=with_configuration))


def lab_element_state(call: Call) -> Response:
    return json_response(payloads.element_state(call.host.lab(call.lab_id)))


def import_lab(call: Call) -> Response:
    title = call.request.query_params.get("title")
    lab, warnings = import_topology(call.host, call.body.decode(errors="replace"), title, call.user, call.now)
    call.host.add_event("import_lab", {"lab_id": lab.id, "user_id": call.user.id}, call.now)
    return json_response({"id": lab.id, "warnings": warnings})


def get_licensing(call: Call) -> Response:
    call.require_admin()
    return json_response(payloads.licensing(call.host))


def register_license(call: Call) -> Response:
    call.require_admin()
    body = call.json()
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not re.fullmatch(r"[a-zA-Z\d+/%=-]{1,256}", token):
        raise SimError(400, "Invalid input: token must be a Smart Licensing registration token.")
    call.host.register_license(token, bool(body.get("reregister", False)), call.now)
    call.host.add_event("license_info", {"user_id": call.user.id, "action": "register"}, call.now)
    return no_content()


def deregister_license(call: Call) -> Response:
    call.require_admin()
    call.host.deregister_license()
    return no_content()


def telemetry_events(call: Call) -> Response:
    call.require_admin()
    events = [
        {"category": e.category, "timestamp": payloads.telemetry_timestamp(e.timestamp), "data": e.data}
        for e in call.host.telemetry
    ]
    return json_response(events)


def list_users(call: Call) -> Response:
    return json_response([payloads.user(call.host, user) for user in call.host.users.values()])


def create_user(call: Call) -> Response:
    call.require_admin()
    body = call.json()
    if not isinstance(body, dict) or not body.get("username") or not body.get("password"):
        raise SimError(422, "A user needs a username and a password.")
    user = call.host.add_user(
        str(body["username"]),
        str(body["password"]),
        fullname=str(body.get("fullname", "")),
        admin=bool(body.get("admin", False)),
        now=call.now,
    )
    return json_response(payloads.user(call.host, user), 201)


# -- catalogue: definitions, computes, notices, dashboard ----------------------------------------------------


def node_definitions(call: Call) -> Response:
    return json_response([payloads.node_definition(d) for d in NODE_DEFINITIONS.values()])


def image_definitions(call: Call) -> Response:
    return json_response([payloads.image_definition(d) for d in NODE_DEFINITIONS.values() if d.image])


def node_definition_images(call: Call) -> Response:
    definition = NODE_DEFINITIONS.get(call.path("definition_id"))
    if definition is None:
        raise SimError(404, f"Node definition not found: {call.path('definition_id')}")
    return json_response([payloads.image_definition(definition)] if definition.image else [])


def compute_hosts(call: Call) -> Response:
    call.require_admin()
    return json_response([payloads.compute_host(call.host, index) for index in range(len(call.host.computes))])


def system_notices(call: Call) -> Response:
    return json_response([])  # simulated hosts announce no maintenance


def maintenance_mode(call: Call) -> Response:
    return json_response({"maintenance_mode": False, "notice": None})


def lab_tiles(call: Call) -> Response:
    everyone = call.flag("show_all") and call.user.admin
    labs = [lab for lab in call.host.labs.values() if everyone or lab.owner.id == call.user.id]
    return json_response({"lab_tiles": {lab.id: payloads.lab_tile(lab) for lab in labs}})


def api_routes(host_for: Callable[[str], SimHost], clock: Callable[[], datetime]) -> list[Route]:
    """Routes relative to `/hosts/{host}/api/v0`; `host_for` returns (seeding if needed) a host by key."""

    def route(path: str, handler: Callable[..., Response], method: str, *, authenticated: bool = True) -> Route:
        endpoint = host_endpoint(host_for, clock, handler, authenticated=authenticated)
        return Route(path, endpoint, methods=[method])

    lab, node, link = "/labs/{lab_id}", "/labs/{lab_id}/nodes/{node_id}", "/labs/{lab_id}/links/{link_id}"
    return [
        route("/authenticate", authenticate, "POST", authenticated=False),
        route("/system_information", system_information, "GET", authenticated=False),
        route("/authok", authok, "GET"),
        route("/logout", logout, "DELETE"),
        route("/system_health", system_health, "GET"),
        route("/system_stats", system_stats, "GET"),
        route("/system/compute_hosts", compute_hosts, "GET"),
        route("/system/notices", system_notices, "GET"),
        route("/system/maintenance_mode", maintenance_mode, "GET"),
        route("/node_definitions", node_definitions, "GET"),
        route("/node_definitions/{definition_id}/image_definitions", node_definition_images, "GET"),
        route("/image_definitions", image_definitions, "GET"),
        route("/populate_lab_tiles", lab_tiles, "GET"),
        route("/labs", list_labs, "GET"),
        route("/labs", create_lab, "POST"),
        route(lab, get_lab, "GET"),
        route(lab, update_lab, "PATCH"),
        route(lab, delete_lab, "DELETE"),
        route(f"{lab}/state", lab_state, "GET"),
        route(f"{lab}/start", start_lab, "PUT"),
        route(f"{lab}/stop", stop_lab, "PUT"),
        route(f"{lab}/wipe", wipe_lab, "PUT"),
        route(f"{lab}/check_if_converged", elements.lab_converged, "GET"),
        route(f"{lab}/download", download_lab, "GET"),
        route(f"{lab}/topology", lab_topology, "GET"),
        route(f"{lab}/lab_element_state", lab_element_state, "GET"),
        route(f"{lab}/nodes", elements.list_nodes, "GET"),
        route(f"{lab}/nodes", elements.add_node, "POST"),
        route(node, elements.get_node, "GET"),
        route(node, elements.patch_node, "PATCH"),
        route(node, elements.delete_node, "DELETE"),
        route(f"{node}/state", elements.node_state, "GET"),
        route(f"{node}/state/start", elements.start_node, "PUT"),
        route(f"{node}/state/stop", elements.stop_node, "PUT"),
        route(f"{node}/wipe_disks", elements.wipe_node, "PUT"),
        route(f"{node}/check_if_converged", elements.node_converged, "GET"),
        route(f"{lab}/interfaces", elements.list_interfaces, "GET"),
        route(f"{lab}/interfaces", elements.add_interface, "POST"),
        route(f"{lab}/links", elements.list_links, "GET"),
        route(f"{lab}/links", elements.add_link, "POST"),
        route(link, elements.get_link, "GET"),
        route(link, elements.delete_link, "DELETE"),
        route("/import", import_lab, "POST"),
        route("/licensing", get_licensing, "GET"),
        route("/licensing/registration", register_license, "POST"),
        route("/licensing/deregistration", deregister_license, "DELETE"),
        route("/telemetry/events", telemetry_events, "GET"),
        route("/users", list_users, "GET"),
        route("/users", create_user, "POST"),
    ]
