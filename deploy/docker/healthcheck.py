#!/usr/bin/env python3
"""Container health check of the cml-cloud-manager image (Dockerfile HEALTHCHECK, compose healthchecks).

It asks the process that is PID 1 of the container (the entrypoint `exec`s cml-cloud-manager) what it is:

  api / all   GET http://127.0.0.1:<port>/api/health/ready  -- healthy on 200 (`ok`, or `degraded`: Redis down
              or no worker alive, and the API still serves); 503 means the database is down. It answers within
              HEALTH_TIMEOUT_SECONDS whatever the database and Redis do.
  worker      GET http://127.0.0.1:<health port>/health/ready  -- 200 while running, 503 while stopping or once
              no heartbeat reached the database for LEASE_SECONDS; a worker started without --health-port has
              nothing to ask and counts as healthy
  other       (migrate, token, a shell ...) healthy: nothing to probe

Readiness, not liveness: compose starts nginx once the API can serve, and Docker restarts nothing on its own
for "unhealthy". Kubernetes, which does, probes liveness separately (/api/health/live, /health/live).

The ports come from PID 1's own arguments (--port, --health-port), else APP_PORT / WORKER_HEALTH_PORT.
Standard library only; exit 0 = healthy, 1 = unhealthy.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

ROLES = ("api", "worker", "all")
TIMEOUT_SECONDS = 4.0


def _option(args: Sequence[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def probe_url(cmdline: Sequence[str], env: Mapping[str, str]) -> str | None:
    """The URL that tells whether the process with this command line is healthy, or None for nothing to ask."""
    role = next((arg for arg in cmdline if arg in ROLES), None)
    if role is None:
        return None
    if role == "worker":
        port = _option(cmdline, "--health-port")
        return f"http://127.0.0.1:{port}/health/ready" if port else None
    port = _option(cmdline, "--port") or env.get("APP_PORT") or "8000"
    return f"http://127.0.0.1:{port}/api/health/ready"


def read_cmdline(pid: int = 1) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as raw:
        return [part.decode(errors="replace") for part in raw.read().split(b"\0") if part]


def check(url: str, timeout: float = TIMEOUT_SECONDS) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200, f"{url}: HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url}: HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return False, f"{url}: {exc}"


def main() -> int:
    url = probe_url(read_cmdline(), os.environ)
    if url is None:
        print("nothing to probe: healthy")
        return 0
    healthy, message = check(url)
    print(message)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
