"""Starting the sandbox's two servers as child processes and waiting until they answer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

FAKE_ACCESS_KEY = "sandbox"
FAKE_SECRET_KEY = "sandbox"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ChildServer:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _wait(server: ChildServer, probe: str, timeout: float = 60) -> ChildServer:
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}; see {server.log}")
        try:
            with urllib.request.urlopen(probe, timeout=1):
                return server
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"{server.name} did not answer within {timeout:.0f}s; see {server.log}") from None
            time.sleep(0.1)


def aws_env() -> dict[str, str]:
    """Credentials for the emulator only: it accepts any, and these can never reach real AWS."""
    return {
        "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def start_moto(log_dir: Path, port: int | None = None) -> ChildServer:
    """The AWS emulator (moto's server with our additions, see `aws_emulator`) on loopback; the `sandbox` extra
    installs moto."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        raise RuntimeError("The AWS emulator is not installed: pip install 'cml-cloud-manager[sandbox]'") from None
    port = port or free_port()
    log = log_dir / "aws-emulator.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | aws_env()
    env["MOTO_ENABLE_AMI_VALIDATION"] = "true"  # as real EC2: launching from an unknown AMI fails
    # A file, not a pipe: moto logs every request and would block once a pipe buffer filled up.
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cml_cloud_manager.sandbox.aws_emulator", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = ChildServer("AWS emulator", f"http://127.0.0.1:{port}", proc, log)
    return _wait(server, f"{server.url}/moto-api/")


def start_cml_simulator(log_dir: Path, port: int | None = None) -> ChildServer:
    port = port or free_port()
    log = log_dir / "cml-simulator.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cml_cloud_manager", "sandbox", "cml", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = ChildServer("CML simulator", f"http://127.0.0.1:{port}", proc, log)
    return _wait(server, f"{server.url}/_sim/hosts")
