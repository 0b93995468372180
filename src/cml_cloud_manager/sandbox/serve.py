"""`sandbox aws` and `sandbox all`: the sandbox's servers on their own, for roles started by hand.

`up --sandbox` starts the servers and the app together. These run only the servers, seeded with the demo fleet,
and print the settings that point `api`, `worker` or `all` at them, so that each role (or a split run, or a
debugger) can be started by hand against the same sandbox.
"""

from __future__ import annotations

import shlex
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType

from .run import reset_sandbox_database, sandbox_env
from .seed import AMI_NAME, FLEET, REGION, MetricsFeeder, seed_fleet
from .services import ChildServer, start_cml_simulator, start_moto

LOG_DIR = Path("var/sandbox")
# What describes a CML host; `sandbox aws` has none to point at.
CML_HOST_SETTINGS = ("CML_URL_TEMPLATE", "CML_USERNAME", "CML_PASSWORD", "CML_VERIFY_TLS")


class SandboxError(Exception):
    """Something the person starting the sandbox can fix; the message says what."""


def serve_aws(port: int) -> int:
    """The seeded AWS emulator until Ctrl+C or SIGTERM."""
    return _serve(aws_port=port, cml_port=None)


def serve_all(aws_port: int, cml_port: int) -> int:
    """The seeded AWS emulator and the CML simulator until Ctrl+C or SIGTERM."""
    return _serve(aws_port=aws_port, cml_port=cml_port)


def _serve(*, aws_port: int, cml_port: int | None) -> int:
    stop = threading.Event()

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    # Before anything starts: a SIGTERM while the servers come up must still stop them.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        for name, port in (("--aws-port" if cml_port else "--port", aws_port), ("--cml-port", cml_port)):
            if port is not None:
                _require_free(port, name)
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        reset_sandbox_database()
        with ExitStack() as stack:
            aws = stack.enter_context(_running(start_moto(LOG_DIR, aws_port)))
            cml = stack.enter_context(_running(start_cml_simulator(LOG_DIR, cml_port))) if cml_port else None
            instance_ids = seed_fleet(aws.url)
            feeder = MetricsFeeder(aws.url, instance_ids)
            feeder.start()
            stack.callback(feeder.stopped.set)
            _announce(aws, cml, instance_ids)
            return _wait([server for server in (aws, cml) if server is not None], stop)
    except (SandboxError, RuntimeError) as exc:
        print(f"cml-cloud-manager sandbox: {exc}", file=sys.stderr)
        return 1


def _require_free(port: int, option: str) -> None:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise SandboxError(f"port {port} on 127.0.0.1 is in use; choose another with {option}") from None


@contextmanager
def _running(server: ChildServer) -> Iterator[ChildServer]:
    try:
        yield server
    finally:
        server.stop()


def _announce(aws: ChildServer, cml: ChildServer | None, instance_ids: list[str]) -> None:
    env = sandbox_env(aws.url, cml.url if cml else "")
    if cml is None:
        env = {name: value for name, value in env.items() if name not in CML_HOST_SETTINGS}
    lines = [
        f"AWS emulator on {aws.url}: AMI {AMI_NAME} and {len(instance_ids)} instances in {REGION} "
        f"({', '.join(name for name, _, _ in FLEET)}); log {aws.log}",
    ]
    if cml is not None:
        lines.append(
            f"CML simulator on {cml.url}: every instance id is a CML host at {cml.url}/hosts/<instance id>/ "
            f"(user {env['CML_USERNAME']}, password {env['CML_PASSWORD']}); log {cml.log}"
        )
    lines += [
        "",
        "# Point cml-cloud-manager at this sandbox: paste into another shell (or put the lines, without `export`,",
        "# in .env), then run `cml-cloud-manager api` and `cml-cloud-manager worker`, or `cml-cloud-manager all`.",
        *(f"export {name}={shlex.quote(value)}" for name, value in env.items()),
        "",
    ]
    if cml is None:
        lines.append("# No CML hosts: `cml-cloud-manager sandbox all` adds the simulator and its settings.")
    lines.append("Serving until Ctrl+C.")
    # Flushed: whoever started us may read these lines through a pipe while we keep running.
    print("\n".join(lines), flush=True)


def _wait(servers: list[ChildServer], stop: threading.Event) -> int:
    """Until SIGINT/SIGTERM (0) or until a server dies (1)."""
    while not stop.wait(0.5):
        for server in servers:
            if server.proc.poll() is not None:
                print(
                    f"cml-cloud-manager sandbox: the {server.name} exited with {server.proc.returncode}; "
                    f"see {server.log}",
                    file=sys.stderr,
                )
                return 1
    return 0
