"""`sandbox aws` and `sandbox all` as a person uses them: real processes, the settings they print, and a role
started by hand against those settings."""

from __future__ import annotations

import asyncio
import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from cml_cloud_manager.sandbox.seed import AMI_NAME, FLEET, REGION

from .processes import Proc, free_port

pytestmark = pytest.mark.e2e

# Settings the sandbox prints; a developer's own values for them must not leak into what the test sees.
OWN_SETTINGS = ("AWS_", "CML_", "DATABASE_URL", "AUTO_IMPORT_", "WORKER_METRICS_", "LABS_REFRESH_", "IDLE_")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["sandbox", "--help"], ["sandbox all", "cml-cloud-manager api", "cml-cloud-manager worker", "virl2-client"]),
        (["sandbox", "aws", "--help"], ["--port", "AWS_ENDPOINT_URL", "five instances", "sandbox all"]),
        (["sandbox", "all", "--help"], ["--aws-port", "--cml-port", "every setting to export"]),
        (["--help"], ["sandbox aws | cml | all"]),
    ],
)
def test_help_says_what_each_server_is_for(args: list[str], expected: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "cml_cloud_manager", *args], capture_output=True, text=True)

    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())  # argparse wraps lines at the terminal width
    for phrase in expected:
        assert phrase in text, f"{phrase!r} missing from:\n{done.stdout}"


class SandboxCommand:
    """A running `cml-cloud-manager sandbox ...`; `exports` are the settings it printed."""

    def __init__(self, popen: subprocess.Popen[str], log: Path) -> None:
        self.popen, self.log = popen, log
        self.lines: queue.Queue[str] = queue.Queue()
        assert popen.stdout is not None
        stdout = popen.stdout

        def pump() -> None:
            for line in stdout:
                self.lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        self.exports = self._read_exports()

    def _read_exports(self, timeout: float = 90) -> dict[str, str]:
        deadline, exports = time.monotonic() + timeout, {}
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no settings after {timeout}s:\n{self.log.read_text()[-3000:]}") from None
            if line.startswith("export "):
                name, _, value = shlex.split(line)[1].partition("=")
                exports[name] = value
            if line.startswith("Serving until Ctrl+C"):
                return exports

    def stop(self, sig: int) -> int:
        self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            raise AssertionError(f"the sandbox ignored {signal.Signals(sig).name}") from None


@pytest.fixture
def sandbox_command(tmp_path: Path) -> Iterator[Callable[..., SandboxCommand]]:
    started: list[SandboxCommand] = []

    def run(*args: str) -> SandboxCommand:
        env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_SETTINGS)}
        log = tmp_path / "sandbox-stderr.log"
        with log.open("w") as errors:
            popen = subprocess.Popen(
                [sys.executable, "-m", "cml_cloud_manager", "sandbox", *args],
                cwd=tmp_path,  # its logs and database go under var/ here
                env=env,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
            )
        command = SandboxCommand(popen, log)
        started.append(command)
        return command

    yield run
    for command in started:
        if command.popen.poll() is None:
            command.stop(signal.SIGTERM)


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def ec2_from(exports: dict[str, str]) -> Any:
    return boto3.session.Session().client(
        "ec2",
        region_name=exports["AWS_REGIONS"],
        endpoint_url=exports["AWS_ENDPOINT_URL"],
        aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"],
    )


def test_sandbox_aws_serves_the_seeded_fleet_and_stops_with_sigterm(
    sandbox_command: Callable[..., SandboxCommand],
) -> None:
    port = free_port()
    sandbox = sandbox_command("aws", "--port", str(port))

    exports = sandbox.exports
    assert exports["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{port}"
    assert exports["AWS_REGIONS"] == REGION
    assert "CML_URL_TEMPLATE" not in exports  # no CML hosts to point at
    ec2 = ec2_from(exports)
    [image] = ec2.describe_images(Owners=[exports["CML_AMI_OWNERS"]])["Images"]
    assert image["Name"] == AMI_NAME
    instances = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    names = {next(t["Value"] for t in i["Tags"] if t["Key"] == "Name"): i for i in instances}
    assert sorted(names) == sorted(name for name, _, _ in FLEET)
    # The emulator it runs is the sandbox's, with the calls moto lacks.
    some = instances[0]["InstanceId"]
    assert ec2.monitor_instances(InstanceIds=[some])["InstanceMonitorings"][0]["Monitoring"]["State"] == "pending"

    assert sandbox.stop(signal.SIGTERM) == 0
    assert refused(port), "the AWS emulator outlived the sandbox command"


async def test_roles_started_by_hand_run_against_sandbox_all(
    sandbox_command: Callable[..., SandboxCommand], start: Callable[..., Any]
) -> None:
    aws_port, cml_port = free_port(), free_port()
    sandbox = sandbox_command("all", "--aws-port", str(aws_port), "--cml-port", str(cml_port))
    exports = sandbox.exports
    assert exports["CML_URL_TEMPLATE"] == f"http://127.0.0.1:{cml_port}/hosts/{{instance_id}}"

    # As a person would after pasting the exports; the test keeps its own database and quick job intervals.
    settings = {k: v for k, v in exports.items() if k != "DATABASE_URL"}
    app: Proc = await start("all", **(settings | {"AUTO_IMPORT_INTERVAL": "2", "WORKER_METRICS_INTERVAL": "2"}))
    async with httpx.AsyncClient(base_url=app.url, timeout=10) as api:
        deadline = time.monotonic() + 60
        while True:
            workers = (await api.get("/api/workers")).json()["items"]
            running = [w for w in workers if w["status"] == "running"]
            # Available means the worker read CML through the printed URL template and credentials.
            if len(workers) == len(FLEET) and running and all(w["service_status"] == "available" for w in running):
                break
            assert time.monotonic() < deadline, f"the fleet never came up: {workers}\n{app.output()[-3000:]}"
            await asyncio.sleep(0.2)

    assert sandbox.stop(signal.SIGINT) == 0  # Ctrl+C
    assert refused(aws_port) and refused(cml_port)
