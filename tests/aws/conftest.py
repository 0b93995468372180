"""Fixtures for the AWS adapter tests.

- `moto_url`: a real moto server process (the sandbox's AWS emulator: moto plus the EC2 calls it lacks), one per
  test session (per xdist worker), found ready by polling.
- `clients`: an `AwsClients` pointed at it; moto's state is reset before each test that uses it.
- `ec2_stub`: a tiny EC2 endpoint on loopback that answers scripted errors (throttling, AuthFailure...) so
  botocore's real retry and error machinery can be exercised where moto cannot (it never throttles).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cml_cloud_manager.aws.session import AwsClients, AwsConfig

REGION = "us-east-1"
FAKE_KEY = "testing"
FAKE_SECRET = "testing"


@pytest.fixture(autouse=True)
def fake_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials in the environment and no way to reach real AWS or the developer's own config."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    # Without this, a credential-less lookup waits on the EC2 metadata service for seconds.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("moto") / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=FAKE_KEY,
        AWS_SECRET_ACCESS_KEY=FAKE_SECRET,
        AWS_DEFAULT_REGION=REGION,
        # Real EC2 refuses unknown AMIs; moto only does when asked.
        MOTO_ENABLE_AMI_VALIDATION="true",
    )
    # A file, not a pipe: the server logs every request and would block once a pipe buffer filled up.
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cml_cloud_manager.sandbox.aws_emulator", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"moto server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"moto server not ready after 60 s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
async def moto_clients(moto_url: str) -> AsyncIterator[AwsClients]:
    # One instance for the session: creating boto3 clients loads large service models.
    clients = AwsClients(
        AwsConfig(
            endpoint_url=moto_url,
            access_key_id=FAKE_KEY,
            secret_access_key=FAKE_SECRET,
            max_concurrency=16,
        )
    )
    yield clients
    await clients.aclose()


@pytest.fixture
def moto(moto_url: str) -> str:
    """The moto server's URL, its state reset for this test."""
    request = urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass
    return moto_url


@pytest.fixture
def clients(moto_clients: AwsClients, moto: str) -> AwsClients:
    return moto_clients


# --- factories -------------------------------------------------------------------------------------------


@pytest.fixture
def register_ami(clients: AwsClients) -> Callable[..., Awaitable[str]]:
    async def register(name: str = "cml2-2.9.0-x86_64", region: str = REGION) -> str:
        answer = await clients.run_ec2(
            region,
            lambda c: c.register_image(
                Name=name,
                Description=f"{name} (test)",
                Architecture="x86_64",
                RootDeviceName="/dev/sda1",
                VirtualizationType="hvm",
            ),
        )
        return answer["ImageId"]

    return register


@pytest.fixture
def launch(clients: AwsClients) -> Callable[..., Awaitable[list[str]]]:
    """Start `count` instances directly through boto3 (test setup, not the code under test)."""

    async def run(image_id: str, count: int = 1, region: str = REGION, **extra: Any) -> list[str]:
        answer = await clients.run_ec2(
            region,
            lambda c: c.run_instances(
                ImageId=image_id, InstanceType="t3.micro", MinCount=count, MaxCount=count, **extra
            ),
        )
        return [raw["InstanceId"] for raw in answer["Instances"]]

    return run


@pytest.fixture
def count_calls(clients: AwsClients) -> Iterator[Callable[[str, str], list[int]]]:
    """count_calls("ec2", "DescribeInstances") -> a list that grows by one per API call made."""
    registered: list[tuple[Any, str, Callable[..., None]]] = []

    def watch(service: str, operation: str, region: str = REGION) -> list[int]:
        calls: list[int] = []
        client = clients.client("ec2" if service == "ec2" else "cloudwatch", region)
        event = f"after-call.{client.meta.service_model.service_id.hyphenize()}.{operation}"

        def record(**_: Any) -> None:
            calls.append(1)

        client.meta.events.register(event, record)
        registered.append((client, event, record))
        return calls

    yield watch
    for client, event, handler in registered:
        client.meta.events.unregister(event, handler)


# --- loopback EC2 stub -----------------------------------------------------------------------------------

EMPTY_DESCRIBE = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
    "<requestId>stub</requestId><reservationSet/></DescribeInstancesResponse>"
)


def ec2_error(code: str, message: str = "stub error") -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        "<RequestID>stub</RequestID></Response>"
    )


@dataclass
class Ec2Stub:
    """Answers queued (status, body) pairs in order, then `EMPTY_DESCRIBE`; records the request bodies."""

    url: str = ""
    script: list[tuple[int, str]] = field(default_factory=list)
    delay: float = 0.0
    bodies: list[str] = field(default_factory=list)
    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, times: int, code: str, status: int = 503, message: str = "stub error") -> None:
        self.script.extend([(status, ec2_error(code, message))] * times)

    def answer(self, body: str, times: int = 1) -> None:
        self.script.extend([(200, body)] * times)

    def next_answer(self, request_body: str) -> tuple[int, str]:
        with self.lock:
            self.bodies.append(request_body)
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self.script.pop(0) if self.script else (200, EMPTY_DESCRIBE)

    def done(self) -> None:
        with self.lock:
            self.in_flight -= 1


@pytest.fixture
def ec2_stub() -> Iterator[Ec2Stub]:
    stub = Ec2Stub()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects

        def do_POST(self) -> None:
            request_body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            status, body = stub.next_answer(request_body)
            try:
                if stub.delay:
                    time.sleep(stub.delay)
                payload = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            finally:
                stub.done()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield stub
    server.shutdown()
    server.server_close()


@pytest.fixture
async def stub_clients(ec2_stub: Ec2Stub) -> AsyncIterator[Callable[..., AwsClients]]:
    """AwsClients factory pointed at the stub: stub_clients(max_attempts=3, ...)."""
    made: list[AwsClients] = []

    def make(**options: Any) -> AwsClients:
        options.setdefault("access_key_id", FAKE_KEY)
        options.setdefault("secret_access_key", FAKE_SECRET)
        clients = AwsClients(AwsConfig(endpoint_url=ec2_stub.url, **options))
        made.append(clients)
        return clients

    yield make
    for clients in made:
        await clients.aclose()
