"""boto3 clients, cached per (service, region), and the thread pool that runs their blocking calls.

boto3 is synchronous. Every call goes through `AwsClients.run_ec2` / `run_cloudwatch`, which run it on a
bounded thread pool so the event loop never blocks and at most `max_concurrency` AWS calls are in flight per
process (matching the HTTP connection pool, so threads never queue for a socket).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar

import boto3
import botocore.session
from botocore.config import Config
from botocore.utils import parse_timestamp

from cml_cloud_manager.aws.errors import BOTO_ERRORS, translate

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_ec2 import EC2Client

T = TypeVar("T")
RetryMode = Literal["standard", "adaptive"]
Service = Literal["ec2", "cloudwatch"]


def parse_aws_timestamp(value: str | int | float) -> datetime:
    """EC2 and CloudWatch send ISO 8601; botocore parses every timestamp with dateutil, which took a fifth of
    worker-metrics' CPU over 1,000 instances. Anything else (epoch seconds, RFC 822) goes to botocore."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    parsed: datetime = parse_timestamp(str(value))
    return parsed


@dataclass(frozen=True, slots=True)
class AwsConfig:
    """How to reach AWS. Fields left as None fall back to boto3's default chain (env, profile, IAM role)."""

    endpoint_url: str | None = None
    """An emulator or VPC endpoint. None lets boto3 use AWS_ENDPOINT_URL(_EC2) or the public endpoint."""
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    profile: str | None = None
    retry_mode: RetryMode = "standard"
    """"standard" backs off per call; "adaptive" also rate-limits the client after throttling."""
    max_attempts: int = 6
    """Total attempts per call, including the first; throttling backoff grows to 20 s between them."""
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_concurrency: int = 32
    """Threads running AWS calls and HTTP connections per client."""


def chunked(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class AwsClients:
    """Creates boto3 clients lazily, one per (service, region), and runs their calls off the event loop.

    Construct one per process and share it; call `aclose()` (or use `async with`) on shutdown.
    """

    def __init__(self, config: AwsConfig | None = None) -> None:
        self.config = config or AwsConfig()
        self._botocore_config = Config(
            # total_max_attempts counts the first try; botocore's "max_attempts" key counts only retries.
            retries={"mode": self.config.retry_mode, "total_max_attempts": self.config.max_attempts},
            connect_timeout=self.config.connect_timeout,
            read_timeout=self.config.read_timeout,
            max_pool_connections=self.config.max_concurrency,
            user_agent_extra="cml-cloud-manager",
        )
        self._executor = ThreadPoolExecutor(max_workers=self.config.max_concurrency, thread_name_prefix="aws")
        # boto3 sessions are not thread-safe, clients are: create under a lock, then share freely.
        self._lock = threading.Lock()
        self._session: boto3.session.Session | None = None
        self._clients: dict[tuple[str, str], Any] = {}
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def client(self, service: Service, region: str) -> Any:
        """The cached client, created on first use. Blocking (loads the service model): call from a thread."""
        key = (service, region)
        with self._lock:
            cached = self._clients.get(key)
            if cached is None:
                if self._session is None:
                    core = botocore.session.get_session()
                    parsers = core.get_component("response_parser_factory")
                    parsers.set_parser_defaults(timestamp_parser=parse_aws_timestamp)
                    self._session = boto3.session.Session(
                        botocore_session=core,
                        aws_access_key_id=self.config.access_key_id,
                        aws_secret_access_key=self.config.secret_access_key,
                        aws_session_token=self.config.session_token,
                        profile_name=self.config.profile,
                    )
                # An explicit endpoint wins; None lets botocore read AWS_ENDPOINT_URL and the config files.
                cached = self._session.client(
                    service,
                    region_name=region,
                    endpoint_url=self.config.endpoint_url,
                    config=self._botocore_config,
                )
                self._clients[key] = cached
            return cached

    def ec2_client(self, region: str) -> EC2Client:
        client: EC2Client = self.client("ec2", region)
        return client

    def cloudwatch_client(self, region: str) -> CloudWatchClient:
        client: CloudWatchClient = self.client("cloudwatch", region)
        return client

    async def run_ec2(self, region: str, call: Callable[[EC2Client], T]) -> T:
        """Run `call(ec2_client)` on the AWS thread pool; botocore errors come back as our typed errors."""
        return await self._run(region, lambda: call(self.ec2_client(region)))

    async def run_cloudwatch(self, region: str, call: Callable[[CloudWatchClient], T]) -> T:
        return await self._run(region, lambda: call(self.cloudwatch_client(region)))

    async def _run(self, region: str, call: Callable[[], T]) -> T:
        if self._closed:
            raise RuntimeError("AwsClients is closed")
        loop = asyncio.get_running_loop()
        # Keep contextvars (log context, request ids) visible inside the thread, as asyncio.to_thread does.
        context = contextvars.copy_context()
        work = functools.partial(context.run, _translated, region, call)
        return await loop.run_in_executor(self._executor, work)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Queued calls are cancelled; running ones finish in their threads without holding up shutdown
        # (closing a client only drops its idle pooled connections).
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            client.close()


def _translated(region: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except BOTO_ERRORS as exc:
        raise translate(exc, region=region) from exc
