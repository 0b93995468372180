"""AwsClients: endpoint and credential resolution, botocore config, caching, running off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from botocore.utils import parse_timestamp

from cml_cloud_manager.aws import ec2
from cml_cloud_manager.aws.session import AwsClients, AwsConfig, parse_aws_timestamp

from .conftest import Ec2Stub

REGION = "us-east-1"


async def test_explicit_endpoint_wins_over_aws_endpoint_url(moto: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    async with AwsClients(AwsConfig(endpoint_url=moto)) as clients:
        assert clients.client("ec2", REGION).meta.endpoint_url == moto
        assert await ec2.describe_instances(clients, REGION) == []


async def test_no_endpoint_falls_back_to_the_default_chain(moto: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Endpoint and credentials both come from the environment, as they would for a container.
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto)
    async with AwsClients() as clients:
        assert clients.client("ec2", REGION).meta.endpoint_url == moto
        assert await ec2.describe_instances(clients, REGION) == []


def test_without_any_endpoint_the_public_aws_endpoint_is_used() -> None:
    clients = AwsClients()
    assert clients.client("ec2", "eu-central-1").meta.endpoint_url == "https://ec2.eu-central-1.amazonaws.com"


def test_botocore_config_carries_retries_timeouts_and_pool_size() -> None:
    config = AwsConfig(retry_mode="adaptive", max_attempts=9, connect_timeout=2, read_timeout=7, max_concurrency=40)
    clients = AwsClients(config)
    client = clients.client("ec2", REGION)

    assert client.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 9}
    assert client.meta.config.connect_timeout == 2
    assert client.meta.config.read_timeout == 7
    assert client.meta.config.max_pool_connections == 40


def test_clients_are_cached_per_service_and_region() -> None:
    clients = AwsClients()

    assert clients.client("ec2", REGION) is clients.client("ec2", REGION)
    assert clients.client("ec2", REGION) is not clients.client("ec2", "eu-west-1")
    assert clients.client("cloudwatch", REGION) is not clients.client("ec2", REGION)
    assert clients.client("ec2", "eu-west-1").meta.region_name == "eu-west-1"


def test_secrets_stay_out_of_the_config_repr() -> None:
    config = AwsConfig(access_key_id="AKIAEXAMPLEEXAMPLE00", secret_access_key="s3cr3t-value", session_token="tok")

    assert "s3cr3t-value" not in repr(config)
    assert "AKIAEXAMPLEEXAMPLE00" not in repr(config)
    assert "tok" not in repr(config).replace("timeout", "")


async def test_calls_never_block_the_event_loop(ec2_stub: Ec2Stub, stub_clients: Callable[..., AwsClients]) -> None:
    ec2_stub.delay = 0.4
    clients = stub_clients()
    clients.client("ec2", REGION)  # load the service model first; only the call itself is measured
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    try:
        await ec2.describe_instances(clients, REGION)
    finally:
        ticking.cancel()

    assert ticks >= 10  # the loop kept running while the call waited 0.4 s on the network


async def test_concurrent_calls_are_bounded_by_max_concurrency(
    ec2_stub: Ec2Stub, stub_clients: Callable[..., AwsClients]
) -> None:
    ec2_stub.delay = 0.1
    clients = stub_clients(max_concurrency=2)

    await asyncio.gather(*(ec2.describe_instances(clients, REGION) for _ in range(6)))

    assert ec2_stub.requests == 6
    assert ec2_stub.max_in_flight == 2


async def test_closed_clients_refuse_calls(stub_clients: Callable[..., AwsClients]) -> None:
    clients = stub_clients()
    await clients.aclose()

    with pytest.raises(RuntimeError, match="closed"):
        await ec2.describe_instances(clients, REGION)


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-30T21:04:29.000Z",
        "2026-11-30T21:04:29+02:00",
        "2026-11-30T21:04:29",
        "1796073631",
        1796073631.5,
        "Mon, 30 Nov 2026 21:04:29 GMT",
    ],
)
def test_timestamps_parse_as_botocore_parses_them(value: str | float) -> None:
    assert parse_aws_timestamp(value) == parse_timestamp(value)  # type: ignore[arg-type]


def test_clients_parse_timestamps_with_it() -> None:
    clients = AwsClients(AwsConfig(endpoint_url="http://127.0.0.1:9"))
    parser = clients.client("ec2", REGION)._endpoint._response_parser_factory.create_parser("ec2")
    assert parser._timestamp_parser is parse_aws_timestamp
