"""Starting real `cml-cloud-manager` processes for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    role: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int | None = None
    health_port: int | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> tuple[int, float]:
        """Signal and wait; returns (exit code, seconds it took)."""
        began = time.monotonic()
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"{self.role} did not stop within {timeout}s:\n{self.output()[-3000:]}") from None
        return code, time.monotonic() - began


def spawn(role: str, env: dict[str, str], log_dir: Path, *args: str, cwd: Path | None = None) -> Proc:
    port = free_port() if role in ("api", "all") else None
    health_port = free_port() if role == "worker" else None
    full_env = {**os.environ, **env}
    if port is not None:
        full_env["APP_PORT"] = str(port)
    argv = [sys.executable, "-m", "cml_cloud_manager", role, *args]
    if health_port is not None:
        argv += ["--health-port", str(health_port)]
    log = log_dir / f"{role}-{port or health_port}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(argv, env=full_env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    return Proc(role, popen, log, port, health_port, env)


async def wait_ready(proc: Proc, timeout: float = 30) -> None:
    """Poll the process's health endpoint until it answers (the process has finished starting)."""
    url = f"{proc.url}/api/health" if proc.port else f"http://127.0.0.1:{proc.health_port}/health"
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise AssertionError(f"{proc.role} exited with {proc.popen.returncode}:\n{proc.output()[-3000:]}")
            try:
                if (await client.get(url)).status_code in (200, 503):
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{proc.role} not ready after {timeout}s:\n{proc.output()[-3000:]}")
