"""CML 2.9 REST endpoints of a simulated host (everything under `/hosts/<key>/api/v0`)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from cml_cloud_manager.cml import simulator_payloads as payloads
from cml_cloud_manager.cml.simulator_state import SimError, SimHost, SimUser
from cml_cloud_manager.cml.simulator_topology import export_yaml, import_topology, new_node

HOST_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass
class Call:
    """One authenticated request to a simulated host, as handlers see it."""

    request: Request
    host: SimHost
    user: SimUser
    body: bytes
    now: datetime

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            raise SimError(422, "The request body is not valid JSON.") from None

    def flag(self, name: str) -> bool:
        return self.request.query_params.get(name, "false").lower() in ("1", "true", "yes")

    @property
    def lab_id(self) -> str:
        return str(self.request.path_params["lab_id"])

    def require_admin(self) -> None:
        if not self.user.admin:
            raise SimError(403, "Access denied: administrator rights required.")


def json_response(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def error_response(status: int, description: str) -> JSONResponse:
    return json_response(payloads.error_body(status, description), status)


def no_content() -> Response:
    return Response(status_code=204)


def _host_endpoint(
    host_for: Callable[[str], SimHost],
    clock: Callable[[], datetime],
    handler: Callable[..., Response],
    *,
    authenticated: bool = True,
) -> Callable[[Request], Any]:
    """Wrap a handler with what every simulated host does first: delays, outages, bearer auth, errors.

    Authenticated handlers receive a `Call`; the others `(host, body)`.
    """

    async def endpoint(request: Request) -> Response:
        key = str(request.path_params["host"])
        if not HOST_KEY.fullmatch(key):
            return error_response(404, f"No such host: {key}")
        host = host_for(key)
        host.request_count += 1
        host.inflight += 1
        host.max_inflight = max(host.max_inflight, host.inflight)
        try:
            # Read before any delay: a client that gives up meanwhile must not turn into a server error.
            body = await request.body()
            if host.config.slow_seconds:
                await asyncio.sleep(host.config.slow_seconds)
            if host.config.unreachable:
                # What the reverse proxy in front of a stopped controller answers.
                return PlainTextResponse(f"503 Service Unavailable: upstream {key} is unreachable", 503)
            now = clock()
            if not authenticated:
                return handler(host, body)
            header = request.headers.get("authorization", "")
            if not header.lower().startswith("bearer "):
                return error_response(401, "No authorization token provided.")
            user = host.user_for_token(header[7:].strip())
            if user is None:
                return error_response(401, "Authorization token is invalid or has expired.")
            return handler(Call(request, host, user, body, now))
        except SimError as exc:
            return error_response(exc.status, exc.description)
        except ClientDisconnect:
            return Response(status_code=499)  # nobody is listening; nginx's code for it
        finally:
            host.inflight -= 1

    return endpoint


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


def list_nodes(call: Call) -> Response:
    lab = call.host.lab(call.lab_id)
    if call.flag("data"):
        return json_response([payloads.node_data(lab, node) for node in lab.nodes.values()])
    return json_response(list(lab.nodes))


def add_node(call: Call) -> Response:
    lab, body = call.host.lab(call.lab_id), call.json()
    if not isinstance(body, dict) or not body.get("label") or not body.get("node_definition"):
        raise SimError(422, "A node needs a label and a node_definition.")
    node = new_node(lab, body, populate_interfaces=call.flag("populate_interfaces"))
    lab.modified = call.now
    return json_response({"id": node.id})


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


def api_routes(host_for: Callable[[str], SimHost], clock: Callable[[], datetime]) -> list[Route]:
    """Routes relative to `/hosts/{host}/api/v0`; `host_for` returns (seeding if needed) a host by key."""

    def route(path: str, handler: Callable[..., Response], method: str, *, authenticated: bool = True) -> Route:
        endpoint = _host_endpoint(host_for, clock, handler, authenticated=authenticated)
        return Route(path, endpoint, methods=[method])

    lab = "/labs/{lab_id}"
    api = [
        route("/authenticate", authenticate, "POST", authenticated=False),
        route("/system_information", system_information, "GET", authenticated=False),
        route("/authok", authok, "GET"),
        route("/logout", logout, "DELETE"),
        route("/system_health", system_health, "GET"),
        route("/system_stats", system_stats, "GET"),
        route("/labs", list_labs, "GET"),
        route("/labs", create_lab, "POST"),
        route(lab, get_lab, "GET"),
        route(lab, update_lab, "PATCH"),
        route(lab, delete_lab, "DELETE"),
        route(f"{lab}/state", lab_state, "GET"),
        route(f"{lab}/start", start_lab, "PUT"),
        route(f"{lab}/stop", stop_lab, "PUT"),
        route(f"{lab}/wipe", wipe_lab, "PUT"),
        route(f"{lab}/download", download_lab, "GET"),
        route(f"{lab}/topology", lab_topology, "GET"),
        route(f"{lab}/lab_element_state", lab_element_state, "GET"),
        route(f"{lab}/nodes", list_nodes, "GET"),
        route(f"{lab}/nodes", add_node, "POST"),
        route("/import", import_lab, "POST"),
        route("/licensing", get_licensing, "GET"),
        route("/licensing/registration", register_license, "POST"),
        route("/licensing/deregistration", deregister_license, "DELETE"),
        route("/telemetry/events", telemetry_events, "GET"),
        route("/users", list_users, "GET"),
        route("/users", create_user, "POST"),
    ]
    return api
