"""Running the shipped nginx config (deploy/nginx/nginx.conf) in front of a test's `api` process.

Debian's nginx (`apt-get install nginx`, which `make deps` installs), run without privileges: its own prefix,
pid, temp and log paths in a private directory, a free loopback port. What belongs to the Docker deployment is
pointed at the test: the upstream's `server api:8000 resolve` (Docker's DNS, and `resolve` needs nginx 1.27.3,
newer than Debian's) becomes the test's API address, `listen 8080` the free port, and the paths move into the
private directory. Everything else, the forwarded headers, timeouts, buffering and locations, is run as shipped.
Run as root (a CI container), nginx is started as `nobody` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import crossplane  # type: ignore[import-untyped]
import httpx
import pytest

from .processes import free_port

NGINX_CONF = Path(__file__).parents[2] / "deploy" / "nginx" / "nginx.conf"
TEMP_PATHS = ("client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path", "uwsgi_temp_path", "scgi_temp_path")
UNPRIVILEGED = "nobody"


def nginx_binary() -> Path:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/sbin/nginx") if Path(p).exists()), None)
    if found is None:
        pytest.fail("nginx is missing: apt-get install nginx (or run `make deps` as root)")
    return Path(found)


def _walk(block: list[dict[str, Any]], name: str) -> Iterator[dict[str, Any]]:
    for directive in block:
        if directive["directive"] == name:
            yield directive
        yield from _walk(directive.get("block", []), name)


def _one(block: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [d for d in block if d["directive"] == name]
    assert len(found) == 1, f"the shipped nginx.conf changed shape: expected one {name}, found {len(found)}"
    return found[0]


def config_for_test(upstream_port: int, port: int, prefix: Path) -> str:
    """The shipped config with the deployment's addresses and paths pointed at this test (see the module)."""
    parsed = crossplane.parse(str(NGINX_CONF), single=True, comments=False)
    assert parsed["status"] == "ok", parsed["errors"]
    config: list[dict[str, Any]] = parsed["config"][0]["parsed"]
    _one(config, "pid")["args"] = [str(prefix / "nginx.pid")]
    http = _one(config, "http")["block"]
    [upstream] = _walk(http, "upstream")
    [server] = [d for d in upstream["block"] if d["directive"] == "server"]
    assert server["args"] == ["api:8000", "resolve"], server["args"]
    server["args"] = [f"127.0.0.1:{upstream_port}"]
    [listen] = _walk(http, "listen")
    assert listen["args"] == ["8080"], listen["args"]
    listen["args"] = [f"127.0.0.1:{port}"]
    for name in TEMP_PATHS:
        http.insert(0, {"directive": name, "args": [str(prefix / name)]})
    built: str = crossplane.build(config)
    return built


@dataclass
class Nginx:
    proc: subprocess.Popen[bytes]
    url: str
    prefix: Path

    @property
    def log(self) -> str:
        return (self.prefix / "nginx.log").read_text(errors="replace")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGQUIT)  # graceful: workers finish their requests
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.prefix, ignore_errors=True)


def start(upstream_port: int) -> Nginx:
    """nginx with the shipped config in front of 127.0.0.1:`upstream_port`, checked by `nginx -t`, starting."""
    binary = nginx_binary()
    port = free_port()
    # Not under pytest's tmp_path: as root, that is private to root, and nginx runs as nobody.
    prefix = Path(tempfile.mkdtemp(prefix="cml-nginx-"))
    conf = prefix / "nginx.conf"
    conf.write_text(config_for_test(upstream_port, port, prefix))
    log = prefix / "nginx.log"
    log.touch()
    run_as: dict[str, Any] = {}
    if os.geteuid() == 0:
        user = pwd.getpwnam(UNPRIVILEGED)
        for path in (prefix, conf, log):
            os.chown(path, user.pw_uid, user.pw_gid)
        run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    # The shipped config logs to /dev/stdout and /dev/stderr (`docker logs`): here, a file nginx's user owns.
    argv = [str(binary), "-p", str(prefix), "-c", str(conf), "-e", "stderr"]
    with log.open("ab") as out:
        checked = subprocess.run([*argv, "-t"], stdout=out, stderr=subprocess.STDOUT, timeout=30, **run_as)
    assert checked.returncode == 0, f"nginx -t refused the config:\n{log.read_text()}\n{conf.read_text()}"
    with log.open("ab") as out:
        proc = subprocess.Popen([*argv, "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT, **run_as)
    return Nginx(proc, f"http://127.0.0.1:{port}", prefix)


@contextlib.asynccontextmanager
async def shipped_nginx(upstream_port: int) -> AsyncIterator[str]:
    """`start`, then wait until it answers; yields its base URL."""
    nginx = await asyncio.to_thread(start, upstream_port)
    try:
        await _until_up(nginx)
        yield nginx.url
    finally:
        await asyncio.to_thread(nginx.stop)


async def _until_up(nginx: Nginx, timeout: float = 15) -> None:
    health = f"{nginx.url}/nginx-health"
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if nginx.proc.poll() is not None:
                raise AssertionError(f"nginx exited with {nginx.proc.returncode}:\n{nginx.log}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(health)).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise AssertionError(f"nginx did not answer {health} within {timeout}s:\n{nginx.log}")
