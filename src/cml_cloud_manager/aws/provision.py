"""Launching a worker instance: one RunInstances call, an optional wait for "running", and cleanup on failure.

The rule this module keeps: if EC2 created an instance and we then fail (or are cancelled), the instance is
terminated before the error propagates, so the fleet never holds a machine nobody tracks.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, cast

from cml_cloud_manager.aws._convert import to_instance
from cml_cloud_manager.aws.ec2 import describe_instances, terminate_instances
from cml_cloud_manager.aws.errors import AwsError, AwsThrottled, ProvisioningFailed
from cml_cloud_manager.aws.session import AwsClients
from cml_cloud_manager.aws.types import Instance, InstanceState
from cml_cloud_manager.errors import AppError

if TYPE_CHECKING:
    from mypy_boto3_ec2.literals import InstanceTypeType
    from mypy_boto3_ec2.type_defs import RunInstancesRequestTypeDef, TagSpecificationTypeDef, TagTypeDef

log = logging.getLogger(__name__)


async def run_instance(
    clients: AwsClients,
    region: str,
    *,
    ami_id: str,
    instance_type: str,
    subnet_id: str | None = None,
    security_group_ids: Sequence[str] = (),
    key_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    name: str | None = None,
    detailed_monitoring: bool = False,
    client_token: str | None = None,
    wait_until_running: bool = False,
    wait_timeout: float = 600.0,
    poll_interval: float = 5.0,
) -> Instance:
    """Launch one instance, tagged at creation (Name + `tags`, on the instance and its volumes).

    `client_token` makes the launch idempotent: botocore retries a timed-out RunInstances, and a retried
    command passes the same token, so neither starts a second instance. Pass the command id when there is one.

    Any failure raises ProvisioningFailed. If the instance was created but a later step failed (or the caller
    was cancelled) it is terminated, so nothing untracked keeps running; `detail["cleanup"]` tells how that
    went ("not_needed", "terminated" or "failed").
    """
    all_tags = {**(tags or {}), **({"Name": name} if name else {})}
    request: RunInstancesRequestTypeDef = {
        "ImageId": ami_id,
        "InstanceType": cast("InstanceTypeType", instance_type),
        "MinCount": 1,
        "MaxCount": 1,
        "ClientToken": client_token or uuid.uuid4().hex,
        "Monitoring": {"Enabled": detailed_monitoring},
    }
    if subnet_id:
        request["SubnetId"] = subnet_id
    if security_group_ids:
        request["SecurityGroupIds"] = list(security_group_ids)
    if key_name:
        request["KeyName"] = key_name
    if all_tags:
        tag_list: list[TagTypeDef] = [{"Key": k, "Value": v} for k, v in all_tags.items()]
        specs: list[TagSpecificationTypeDef] = [
            {"ResourceType": "instance", "Tags": tag_list},
            {"ResourceType": "volume", "Tags": tag_list},
        ]
        request["TagSpecifications"] = specs

    launch = asyncio.ensure_future(
        clients.run_ec2(region, lambda c: to_instance(c.run_instances(**request)["Instances"][0], region))
    )
    try:
        # Shielded: cancelling the caller cannot stop the thread, which may still create the instance.
        instance = await asyncio.shield(launch)
    except asyncio.CancelledError:
        await _terminate_after_cancel(clients, region, launch)
        raise
    except Exception as exc:
        raise _provisioning_failed(f"Launching {ami_id} ({instance_type}) in {region} failed", exc) from exc

    if not wait_until_running:
        return instance
    try:
        async with asyncio.timeout(wait_timeout):
            return await _wait_running(clients, region, instance.id, poll_interval)
    except asyncio.CancelledError:
        await asyncio.shield(_terminate_quietly(clients, region, instance.id))
        raise
    except Exception as exc:
        cleanup = await _terminate_quietly(clients, region, instance.id)
        raise _provisioning_failed(
            f"Instance {instance.id} from {ami_id} did not reach running", exc, instance.id, cleanup
        ) from exc


async def _wait_running(clients: AwsClients, region: str, instance_id: str, every: float) -> Instance:
    while True:
        # missing_ok: a new instance can be invisible to Describe* for seconds (eventual consistency).
        found = await describe_instances(clients, region, instance_ids=[instance_id], missing_ok=True)
        state = found[0].state if found else InstanceState.PENDING
        if state is InstanceState.RUNNING:
            return found[0]
        if state not in (InstanceState.PENDING, InstanceState.UNKNOWN):
            # e.g. pending -> terminated with Server.InsufficientInstanceCapacity
            reason = found[0].state_reason or "no reason given"
            raise AwsError(f"EC2 moved {instance_id} to {state} ({reason})", state=str(state))
        await asyncio.sleep(every)


async def _terminate_after_cancel(clients: AwsClients, region: str, launch: asyncio.Future[Instance]) -> None:
    try:
        instance = await asyncio.shield(launch)
    except BaseException:
        return  # the launch failed (or we were cancelled again): nothing is known to exist
    await asyncio.shield(_terminate_quietly(clients, region, instance.id))


async def _terminate_quietly(clients: AwsClients, region: str, instance_id: str) -> str:
    try:
        await terminate_instances(clients, region, [instance_id])
    except Exception:
        log.exception("Could not terminate %s in %s after a failed launch; terminate it by hand", instance_id, region)
        return "failed"
    log.warning("Terminated %s in %s after a failed launch", instance_id, region)
    return "terminated"


def _provisioning_failed(
    what: str, exc: Exception, instance_id: str | None = None, cleanup: str = "not_needed"
) -> ProvisioningFailed:
    detail = dict(exc.detail) if isinstance(exc, AppError) else {}
    if isinstance(exc, TimeoutError):
        cause = "timed out waiting for the running state"
    elif isinstance(exc, AppError):
        cause = exc.message
    else:
        cause = f"{type(exc).__name__}: {exc}"
    if cleanup == "terminated":
        cause += f"; {instance_id} was terminated"
    elif cleanup == "failed":
        cause += f"; terminating {instance_id} also failed, terminate it by hand"
    # Worth retrying later: throttling, capacity or a slow start; a bad parameter is not.
    retryable = isinstance(exc, AwsThrottled | TimeoutError) or "InsufficientInstanceCapacity" in cause
    detail.update(instance_id=instance_id, cleanup=cleanup, retryable=retryable)
    return ProvisioningFailed(f"{what}: {cause}", **detail)
