"""A CML 2.9 controller simulator that serves many hosts from one ASGI app.

Host `<key>` lives under `/hosts/<key>`: its base URL is `http://127.0.0.1:PORT/hosts/<key>` and its API
`.../hosts/<key>/api/v0/...`. Hosts appear on first use, seeded from a hash of the key. `/_sim/` is a
control API (not CML's) to make hosts slow, unreachable or refuse credentials, set how long a start, stop or
wipe takes to converge, add telemetry, and reset.
Tests in the same process can use the `Simulator` object directly instead.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from cml_cloud_manager.cml.simulator.api import api_routes
from cml_cloud_manager.cml.simulator.calls import HOST_KEY, error_response, json_response, no_content
from cml_cloud_manager.cml.simulator.seed import seed_host
from cml_cloud_manager.cml.simulator.state import HostConfig, SimHost
from cml_cloud_manager.cml.types import parse_cml_datetime


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Simulator:
    """Every simulated host, in memory. Safe to drive from a test thread while uvicorn serves another."""

    def __init__(
        self,
        *,
        username: str = "admin",
        password: str = "admin",
        clock: Callable[[], datetime] = _utcnow,
        max_events_per_host: int = 2000,
    ) -> None:
        self.username = username
        self.password = password
        self.clock = clock
        self.max_events_per_host = max_events_per_host
        self._hosts: dict[str, SimHost] = {}
        self._lock = threading.Lock()
        self.app = create_app(self)

    @staticmethod
    def host_url(root_url: str, key: str) -> str:
        """Base URL of host `key` on a simulator served at `root_url`."""
        return f"{root_url.rstrip('/')}/hosts/{key}"

    def host(self, key: str) -> SimHost:
        """The host for `key`, seeded on first use."""
        host = self._hosts.get(key)
        if host is None:
            with self._lock:
                host = self._hosts.get(key)
                if host is None:
                    host = seed_host(
                        key,
                        self.clock(),
                        username=self.username,
                        password=self.password,
                        max_events=self.max_events_per_host,
                    )
                    self._hosts[key] = host
        return host

    def hosts(self) -> list[str]:
        return sorted(self._hosts)

    def configure(
        self,
        key: str,
        *,
        slow_seconds: float | None = None,
        unreachable: bool | None = None,
        reject_credentials: bool | None = None,
        settle_seconds: float | None = None,
    ) -> HostConfig:
        """Change how host `key` behaves; arguments left at None keep their current value."""
        host = self.host(key)
        if slow_seconds is not None:
            host.config.slow_seconds = max(0.0, float(slow_seconds))
        if settle_seconds is not None:
            host.config.settle_seconds = max(0.0, float(settle_seconds))
        if unreachable is not None:
            host.config.unreachable = unreachable
        if reject_credentials is not None:
            host.config.reject_credentials = reject_credentials
            if reject_credentials:
                # As after a password change: live sessions end too, so clients must log in again.
                host.invalidate_tokens()
        return host.config

    def add_telemetry_event(
        self,
        key: str,
        category: str,
        data: dict[str, Any] | None = None,
        *,
        timestamp: datetime | None = None,
    ) -> None:
        self.host(key).add_event(category, dict(data or {}), timestamp or self.clock())

    def invalidate_tokens(self, key: str) -> None:
        """Expire every session on host `key`, as a controller restart would."""
        self.host(key).invalidate_tokens()

    def reset(self, key: str | None = None) -> None:
        """Forget one host (or all); the next request re-seeds it from its key."""
        with self._lock:
            if key is None:
                self._hosts.clear()
            else:
                self._hosts.pop(key, None)


# -- control API (/_sim) -------------------------------------------------------------------------------------


def _host_summary(host: SimHost) -> dict[str, Any]:
    return {
        "key": host.key,
        "labs": [{"id": lab.id, "title": lab.title, "state": lab.state} for lab in host.labs.values()],
        "license": host.license.kind,
        "config": asdict(host.config),
        "auth_count": host.auth_count,
        "request_count": host.request_count,
        "telemetry_events": len(host.telemetry),
    }


def _control_routes(sim: Simulator) -> list[Route]:
    """`/_sim/...`: health, hosts, per-host config/telemetry/token invalidation/reset, and a global reset."""

    def for_host(handle: Callable[[Request, str, Any], Response]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            key = str(request.path_params["host"])
            if not HOST_KEY.fullmatch(key):
                return error_response(404, f"No such host: {key}")
            try:
                raw = await request.body()
                return handle(request, key, json.loads(raw) if raw else None)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                return error_response(422, f"Malformed control request: {exc}")

        return endpoint

    def host_detail(request: Request, key: str, body: Any) -> Response:
        if request.method == "DELETE":
            sim.reset(key)
            return no_content()
        return json_response(_host_summary(sim.host(key)))

    def configure(request: Request, key: str, body: Any) -> Response:
        allowed = {"slow_seconds", "unreachable", "reject_credentials", "settle_seconds"}
        if not isinstance(body, dict) or not set(body) <= allowed:
            return error_response(422, f"Settable fields: {sorted(allowed)}")
        slow, unreachable, reject, settle = (
            body.get(name) for name in ("slow_seconds", "unreachable", "reject_credentials", "settle_seconds")
        )
        config = sim.configure(
            key,
            slow_seconds=None if slow is None else float(slow),
            unreachable=None if unreachable is None else bool(unreachable),
            reject_credentials=None if reject is None else bool(reject),
            settle_seconds=None if settle is None else float(settle),
        )
        return json_response(asdict(config))

    def add_telemetry(request: Request, key: str, body: Any) -> Response:
        items = body if isinstance(body, list) else [body]
        for item in items:
            stamp = item.get("timestamp")
            when = parse_cml_datetime(str(stamp)) if stamp else None
            sim.add_telemetry_event(key, str(item["category"]), dict(item.get("data") or {}), timestamp=when)
        return json_response({"added": len(items)}, 201)

    def invalidate(request: Request, key: str, body: Any) -> Response:
        sim.invalidate_tokens(key)
        return no_content()

    async def health(request: Request) -> Response:
        return json_response({"status": "ok", "hosts": len(sim.hosts())})

    async def list_hosts(request: Request) -> Response:
        return json_response([_host_summary(sim.host(key)) for key in sim.hosts()])

    async def reset(request: Request) -> Response:
        sim.reset()
        return no_content()

    return [
        Route("/health", health, methods=["GET"]),
        Route("/hosts", list_hosts, methods=["GET"]),
        Route("/hosts/{host}", for_host(host_detail), methods=["GET", "DELETE"]),
        Route("/hosts/{host}/config", for_host(configure), methods=["PUT", "PATCH", "POST"]),
        Route("/hosts/{host}/telemetry", for_host(add_telemetry), methods=["POST"]),
        Route("/hosts/{host}/invalidate_tokens", for_host(invalidate), methods=["POST"]),
        Route("/reset", reset, methods=["POST"]),
    ]


def create_app(sim: Simulator) -> Starlette:
    return Starlette(
        routes=[
            # Late-bound clock: tests may swap `sim.clock` after the app exists.
            Mount("/hosts/{host}/api/v0", routes=api_routes(sim.host, lambda: sim.clock())),
            Mount("/_sim", routes=_control_routes(sim)),
        ]
    )


def run_simulator(
    host: str = "127.0.0.1",
    port: int = 9443,
    hosts: list[str] | None = None,
    username: str = "admin",
    password: str = "admin",
) -> None:
    """Serve the simulator with uvicorn until interrupted, after printing how to reach each listed host."""
    invalid = [key for key in hosts or [] if not HOST_KEY.fullmatch(key)]
    if invalid:
        raise ValueError(f"host keys must match {HOST_KEY.pattern}: {invalid}")
    sim = Simulator(username=username, password=password)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    root = f"http://{shown}:{port}"
    # Flushed: the sandbox and tests read these lines through a pipe while the server keeps running.
    print(
        f"CML simulator on {root} (any /hosts/<key> is a CML host; control API under {root}/_sim/)",
        flush=True,
    )
    for key in hosts or []:
        sim.host(key)
        # With the trailing slash: clients that join "api/v0/" onto it (virl2-client does) keep the host path.
        base_url = f"{sim.host_url(root, key)}/"
        print(f"  {key}: base_url={base_url} username={username} password={password}", flush=True)
    uvicorn.run(sim.app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")


@dataclass(frozen=True)
class RunningSimulator:
    """A simulator being served; `base_url(key)` is what a `CMLClient` for host `key` needs."""

    sim: Simulator
    root_url: str

    def base_url(self, key: str) -> str:
        return Simulator.host_url(self.root_url, key)


@contextmanager
def serve_in_thread(
    sim: Simulator | None = None,
    *,
    host: str = "127.0.0.1",
    startup_timeout: float = 10.0,
    tls: tuple[Path, Path] | None = None,
) -> Iterator[RunningSimulator]:
    """Serve `sim` with uvicorn on a free port in a background thread, for tests in any slice.

    With `tls` (certificate file, key file) it serves HTTPS. Returns once the server accepts connections; stops
    it on exit.
    """
    sim = sim or Simulator()
    # Binding first (port 0) and handing the socket over leaves no window for someone else to take the port.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    config = uvicorn.Config(
        sim.app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="cml-simulator", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the CML simulator did not start")
            time.sleep(0.005)
        yield RunningSimulator(sim, f"{'https' if tls else 'http'}://{host}:{sock.getsockname()[1]}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
