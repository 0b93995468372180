"""Launching instances against a real moto server, including the cleanup of half-done launches."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

from cml_cloud_manager.aws import ec2
from cml_cloud_manager.aws.errors import ProvisioningFailed
from cml_cloud_manager.aws.provision import run_instance
from cml_cloud_manager.aws.session import AwsClients
from cml_cloud_manager.aws.types import InstanceState

REGION = "us-east-1"
RegisterAmi = Callable[..., Awaitable[str]]


async def live_instances(clients: AwsClients) -> list[str]:
    found = await ec2.describe_instances(clients, REGION, filters={"instance-state-name": list(ec2.ACTIVE_STATES)})
    return [i.id for i in found]


OnDescribe = Callable[[Callable[..., Any]], Callable[[], None]]


@pytest.fixture
def on_describe(clients: AwsClients) -> Iterator[OnDescribe]:
    """Hook a handler into the client's DescribeInstances calls (botocore's event system, no patching).

    A handler returning (http_response, parsed) answers the call instead of the server. Returns `unhook`.
    """
    client = clients.client("ec2", REGION)
    event = "before-call.ec2.DescribeInstances"
    handlers: list[Callable[..., Any]] = []

    def hook(handler: Callable[..., Any]) -> Callable[[], None]:
        client.meta.events.register(event, handler)
        handlers.append(handler)
        return lambda: client.meta.events.unregister(event, handler)

    yield hook
    for handler in handlers:
        client.meta.events.unregister(event, handler)


async def test_run_instance_tags_at_creation_and_waits_for_running(
    clients: AwsClients, register_ami: RegisterAmi
) -> None:
    ami = await register_ami()
    group = await clients.run_ec2(REGION, lambda c: c.create_security_group(GroupName="cml", Description="cml"))
    await clients.run_ec2(REGION, lambda c: c.create_key_pair(KeyName="ops"))
    subnet = (await clients.run_ec2(REGION, lambda c: c.describe_subnets()))["Subnets"][0]["SubnetId"]

    instance = await run_instance(
        clients,
        REGION,
        ami_id=ami,
        instance_type="c5.2xlarge",
        subnet_id=subnet,
        security_group_ids=[group["GroupId"]],
        key_name="ops",
        name="cml-worker-01",
        tags={"managed-by": "cml-cloud-manager"},
        detailed_monitoring=True,
        wait_until_running=True,
        poll_interval=0.01,
    )

    assert instance.state is InstanceState.RUNNING
    assert instance.name == "cml-worker-01"
    assert instance.tags == {"Name": "cml-worker-01", "managed-by": "cml-cloud-manager"}
    assert instance.image_id == ami and instance.instance_type == "c5.2xlarge"
    assert instance.subnet_id == subnet and instance.key_name == "ops"
    assert [g.id for g in instance.security_groups] == [group["GroupId"]]
    assert instance.detailed_monitoring
    volumes = await clients.run_ec2(
        REGION,
        lambda c: c.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [instance.id]}]),
    )
    assert {"Key": "Name", "Value": "cml-worker-01"} in volumes["Volumes"][0]["Tags"]


async def test_run_instance_without_waiting_returns_the_pending_instance(
    clients: AwsClients, register_ami: RegisterAmi
) -> None:
    instance = await run_instance(clients, REGION, ami_id=await register_ami(), instance_type="t3.micro")

    assert instance.state in (InstanceState.PENDING, InstanceState.RUNNING)
    assert instance.tags == {} and instance.name is None
    assert await live_instances(clients) == [instance.id]


@pytest.mark.parametrize(
    ("bad", "aws_code"),
    [
        ({"ami_id": "ami-0123456789abcdef0"}, "InvalidAMIID.NotFound"),
        ({"subnet_id": "subnet-0123456789abcdef0"}, "InvalidSubnetID.NotFound"),
        ({"security_group_ids": ["sg-0123456789abcdef0"]}, "InvalidGroup.NotFound"),
    ],
)
async def test_bad_parameters_raise_provisioning_failed_and_leave_nothing(
    clients: AwsClients, register_ami: RegisterAmi, bad: dict[str, Any], aws_code: str
) -> None:
    request: dict[str, Any] = {"ami_id": await register_ami(), "instance_type": "t3.micro", **bad}

    with pytest.raises(ProvisioningFailed) as caught:
        await run_instance(clients, REGION, name="doomed", **request)

    error = caught.value
    assert error.detail["aws_code"] == aws_code
    assert error.detail["cleanup"] == "not_needed" and error.detail["instance_id"] is None
    assert error.detail["retryable"] is False
    assert error.message.startswith("Launching ")
    assert await live_instances(clients) == []


async def test_a_failure_after_launch_terminates_the_instance(
    clients: AwsClients, register_ami: RegisterAmi, on_describe: OnDescribe
) -> None:
    def broken_describe(**_: Any) -> None:
        raise RuntimeError("describe blew up")

    unhook = on_describe(broken_describe)

    with pytest.raises(ProvisioningFailed) as caught:
        await run_instance(
            clients, REGION, ami_id=await register_ami(), instance_type="t3.micro", wait_until_running=True
        )
    unhook()

    created = caught.value.detail["instance_id"]
    assert created is not None and caught.value.detail["cleanup"] == "terminated"
    assert f"{created} was terminated" in caught.value.message
    assert await live_instances(clients) == []


async def test_timing_out_while_waiting_terminates_the_instance(
    clients: AwsClients, register_ami: RegisterAmi, on_describe: OnDescribe
) -> None:
    # Answer every DescribeInstances with "nothing yet", as EC2 does right after a launch.
    unhook = on_describe(lambda **_: (AWSResponse("", 200, HTTPHeaders(), None), {"Reservations": []}))

    with pytest.raises(ProvisioningFailed) as caught:
        await run_instance(
            clients,
            REGION,
            ami_id=await register_ami(),
            instance_type="t3.micro",
            wait_until_running=True,
            wait_timeout=0.2,
            poll_interval=0.01,
        )

    unhook()
    assert "timed out" in caught.value.message
    assert caught.value.detail["retryable"] is True
    assert caught.value.detail["cleanup"] == "terminated"
    assert await live_instances(clients) == []


async def test_cancelling_the_caller_terminates_the_instance(
    clients: AwsClients, register_ami: RegisterAmi, on_describe: OnDescribe
) -> None:
    waiting = threading.Event()
    release = threading.Event()

    def slow_describe(**_: Any) -> None:
        waiting.set()
        release.wait(5)

    unhook = on_describe(slow_describe)
    task = asyncio.create_task(
        run_instance(clients, REGION, ami_id=await register_ami(), instance_type="t3.micro", wait_until_running=True)
    )
    await asyncio.to_thread(waiting.wait, 5)
    task.cancel()
    try:
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        release.set()
        unhook()

    [instance] = await ec2.describe_instances(clients, REGION)
    assert instance.state in (InstanceState.SHUTTING_DOWN, InstanceState.TERMINATED)
