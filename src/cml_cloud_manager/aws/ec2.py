"""EC2 adapter: describe, find and operate CML worker instances (launching lives in `aws.provision`).

Every function takes the shared `AwsClients` and a region, pages through results, splits id lists to the
API's limits (running the slices concurrently on the AWS thread pool) and returns `aws.types` objects.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from botocore.exceptions import ClientError

from cml_cloud_manager.aws._convert import ec2_filters, to_change, to_image, to_instance, to_status
from cml_cloud_manager.aws.errors import AwsError, InstanceNotFound
from cml_cloud_manager.aws.session import AwsClients, chunked
from cml_cloud_manager.aws.types import Image, Instance, InstanceStatus, StateChange

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import FilterTypeDef, InstanceStateChangeTypeDef, TagTypeDef

T = TypeVar("T")

# EC2's guidance is at most 1,000 ids per describe call; DescribeInstanceStatus allows only 100.
DESCRIBE_IDS_PER_CALL = 1000
STATUS_IDS_PER_CALL = 100
# Start/stop/terminate/monitor accept more, but AWS recommends small batches: a bad id fails the whole batch.
ACTION_IDS_PER_CALL = 100
TAG_IDS_PER_CALL = 500
# EC2 rejects requests carrying more than 200 filter values in total.
FILTER_VALUES_PER_CALL = 200
DEFAULT_PAGE_SIZE = 1000  # MaxResults accepts 5..1000
ACTIVE_STATES = ("pending", "running", "shutting-down", "stopping", "stopped")

_TOKEN = re.compile(r"[\w.-]+")


async def describe_instances(
    clients: AwsClients,
    region: str,
    *,
    instance_ids: Sequence[str] | None = None,
    filters: Mapping[str, Sequence[str]] | None = None,
    missing_ok: bool = False,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> list[Instance]:
    """Instances by id and/or filter (EC2 filter names, e.g. {"instance-state-name": ["running"]}).

    Unknown ids raise InstanceNotFound, or with `missing_ok` are left out of the result: a sync over thousands
    of known ids must not fail because one instance was purged (terminated ones vanish after about an hour).
    """
    filter_list = ec2_filters(filters)
    if instance_ids is None:
        return await clients.run_ec2(region, lambda c: _describe_pages(c, region, None, filter_list, page_size))
    ids = _unique(instance_ids)

    def one_chunk(chunk: Sequence[str]) -> Callable[[EC2Client], list[Instance]]:
        return lambda c: _without_missing(
            chunk, missing_ok, lambda ids: _describe_pages(c, region, ids, filter_list, None)
        )

    return await _gather_chunks(clients, region, ids, DESCRIBE_IDS_PER_CALL, one_chunk)


async def get_instance(clients: AwsClients, region: str, instance_id: str) -> Instance:
    found = await describe_instances(clients, region, instance_ids=[instance_id])
    if not found:
        raise InstanceNotFound(f"EC2 instance {instance_id} not found in {region}", instance_ids=[instance_id])
    return found[0]


def _describe_pages(
    client: EC2Client,
    region: str,
    ids: Sequence[str] | None,
    filters: list[FilterTypeDef],
    page_size: int | None,
) -> list[Instance]:
    paginator = client.get_paginator("describe_instances")
    # EC2 refuses MaxResults together with InstanceIds; an id list always fits one page anyway.
    pages = (
        paginator.paginate(InstanceIds=list(ids), Filters=filters)
        if ids is not None
        else paginator.paginate(Filters=filters, PaginationConfig={"PageSize": page_size or DEFAULT_PAGE_SIZE})
    )
    return [
        to_instance(raw, region)
        for page in pages
        for reservation in page.get("Reservations", [])
        for raw in reservation.get("Instances", [])
    ]


async def describe_instance_status(
    clients: AwsClients,
    region: str,
    instance_ids: Sequence[str],
    *,
    include_all: bool = True,
    missing_ok: bool = False,
) -> list[InstanceStatus]:
    """System and instance status checks; `include_all` also reports instances that are not running."""
    ids = _unique(instance_ids)

    def statuses(client: EC2Client, chunk: Sequence[str]) -> list[InstanceStatus]:
        pages = client.get_paginator("describe_instance_status").paginate(
            InstanceIds=list(chunk), IncludeAllInstances=include_all
        )
        return [to_status(raw) for page in pages for raw in page.get("InstanceStatuses", [])]

    def one_chunk(chunk: Sequence[str]) -> Callable[[EC2Client], list[InstanceStatus]]:
        return lambda c: _without_missing(chunk, missing_ok, lambda ids: statuses(c, ids))

    return await _gather_chunks(clients, region, ids, STATUS_IDS_PER_CALL, one_chunk)


async def describe_images(
    clients: AwsClients,
    region: str,
    *,
    image_ids: Sequence[str] | None = None,
    owners: Sequence[str] | None = None,
    name_pattern: str | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> list[Image]:
    """AMIs by id, owner (account id, "self", "amazon") and/or name pattern ("cml2-*"; "?" and "*" match)."""
    if not (image_ids or owners or name_pattern):
        # Without a selector EC2 lists every public AMI in the region: hundreds of thousands of images.
        raise ValueError("describe_images needs image_ids, owners or name_pattern")
    filters = ec2_filters({"name": [name_pattern]} if name_pattern else None)

    def call(client: EC2Client) -> list[Image]:
        paginator = client.get_paginator("describe_images")
        if image_ids:
            pages = paginator.paginate(ImageIds=list(image_ids), Owners=list(owners or ()), Filters=filters)
        else:
            pages = paginator.paginate(
                Owners=list(owners or ()), Filters=filters, PaginationConfig={"PageSize": page_size}
            )
        return [to_image(raw, region) for page in pages for raw in page.get("Images", [])]

    return await clients.run_ec2(region, call)


async def find_instances_by_ami_name(
    clients: AwsClients,
    region: str,
    name_pattern: str,
    owners: Sequence[str] | None = None,
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> list[Instance]:
    """Instances (not terminated) launched from any AMI whose name matches `name_pattern`, e.g. "cml2-*"."""
    images = await describe_images(clients, region, owners=owners, name_pattern=name_pattern)
    image_ids = sorted({image.id for image in images})
    # Both filters count towards the per-request limit on filter values.
    per_call = FILTER_VALUES_PER_CALL - len(ACTIVE_STATES)
    slices = await asyncio.gather(
        *(
            describe_instances(
                clients,
                region,
                filters={"image-id": chunk, "instance-state-name": ACTIVE_STATES},
                page_size=page_size,
            )
            for chunk in chunked(image_ids, per_call)
        )
    )
    return [instance for found in slices for instance in found]


async def start_instances(clients: AwsClients, region: str, instance_ids: Sequence[str]) -> dict[str, StateChange]:
    return await _change_state(
        clients,
        region,
        instance_ids,
        lambda c, ids: c.start_instances(InstanceIds=ids).get("StartingInstances", []),
    )


async def stop_instances(
    clients: AwsClients, region: str, instance_ids: Sequence[str], *, force: bool = False
) -> dict[str, StateChange]:
    return await _change_state(
        clients,
        region,
        instance_ids,
        lambda c, ids: c.stop_instances(InstanceIds=ids, Force=force).get("StoppingInstances", []),
    )


async def terminate_instances(clients: AwsClients, region: str, instance_ids: Sequence[str]) -> dict[str, StateChange]:
    return await _change_state(
        clients,
        region,
        instance_ids,
        lambda c, ids: c.terminate_instances(InstanceIds=ids).get("TerminatingInstances", []),
    )


async def _change_state(
    clients: AwsClients,
    region: str,
    instance_ids: Sequence[str],
    action: Callable[[EC2Client, list[str]], Sequence[InstanceStateChangeTypeDef]],
) -> dict[str, StateChange]:
    """Run a state action per batch. A batch succeeds or fails as a whole; others may already be done."""

    def one_chunk(chunk: Sequence[str]) -> Callable[[EC2Client], list[StateChange]]:
        return lambda c: [to_change(raw) for raw in action(c, list(chunk))]

    changes = await _gather_chunks(clients, region, _unique(instance_ids), ACTION_IDS_PER_CALL, one_chunk)
    return {change.instance_id: change for change in changes}


async def set_monitoring(
    clients: AwsClients, region: str, instance_ids: Sequence[str], *, enabled: bool
) -> dict[str, str]:
    """Turn detailed (1-minute) CloudWatch monitoring on or off; returns the monitoring state per instance
    (EC2 answers `pending` or `disabling` while it changes). A refusal names the instances and AWS's reason."""

    async def one_chunk(chunk: list[str]) -> list[tuple[str, str]]:
        def call(client: EC2Client) -> list[tuple[str, str]]:
            if enabled:
                answer = client.monitor_instances(InstanceIds=chunk)
            else:
                answer = client.unmonitor_instances(InstanceIds=chunk)
            return [
                (m.get("InstanceId", ""), m.get("Monitoring", {}).get("State", "pending" if enabled else "disabling"))
                for m in answer.get("InstanceMonitorings", [])
            ]

        try:
            return await clients.run_ec2(region, call)
        except AwsError as exc:
            # AWS's own message rarely says which instance it refused, and a command's reader needs both.
            what = "enable" if enabled else "disable"
            raise type(exc)(
                f"Could not {what} detailed monitoring of {', '.join(chunk)}: {exc.message}", **exc.detail
            ) from exc

    chunks = await asyncio.gather(*(one_chunk(list(c)) for c in chunked(_unique(instance_ids), ACTION_IDS_PER_CALL)))
    return {instance_id: state for chunk in chunks for instance_id, state in chunk}


async def create_tags(clients: AwsClients, region: str, resource_ids: Sequence[str], tags: Mapping[str, str]) -> None:
    """Add or overwrite tags on instances (or any EC2 resource ids)."""
    if not tags or not resource_ids:
        return
    tag_list: list[TagTypeDef] = [{"Key": k, "Value": v} for k, v in tags.items()]

    def one_chunk(chunk: Sequence[str]) -> Callable[[EC2Client], list[None]]:
        def call(client: EC2Client) -> list[None]:
            client.create_tags(Resources=list(chunk), Tags=tag_list)
            return []

        return call

    await _gather_chunks(clients, region, _unique(resource_ids), TAG_IDS_PER_CALL, one_chunk)


async def delete_tags(clients: AwsClients, region: str, resource_ids: Sequence[str], keys: Iterable[str]) -> None:
    """Remove the tags with these keys, whatever their values."""
    tag_list: list[TagTypeDef] = [{"Key": key} for key in dict.fromkeys(keys)]
    # DeleteTags without any key deletes every tag on the resources: never send that.
    if not tag_list or not resource_ids:
        return

    def one_chunk(chunk: Sequence[str]) -> Callable[[EC2Client], list[None]]:
        def call(client: EC2Client) -> list[None]:
            client.delete_tags(Resources=list(chunk), Tags=tag_list)
            return []

        return call

    await _gather_chunks(clients, region, _unique(resource_ids), TAG_IDS_PER_CALL, one_chunk)


async def _gather_chunks(
    clients: AwsClients,
    region: str,
    ids: Sequence[str],
    size: int,
    make_call: Callable[[Sequence[str]], Callable[[EC2Client], list[T]]],
) -> list[T]:
    results = await asyncio.gather(*(clients.run_ec2(region, make_call(chunk)) for chunk in chunked(ids, size)))
    return [item for chunk_result in results for item in chunk_result]


def _without_missing(ids: Sequence[str], missing_ok: bool, call: Callable[[list[str]], list[T]]) -> list[T]:
    """Call with `ids`; if EC2 names unknown ids and `missing_ok`, drop them and call again with the rest."""
    remaining = list(ids)
    while remaining:
        try:
            return call(remaining)
        except ClientError as exc:
            bad = _unknown_ids(exc, remaining)
            if not missing_ok or not bad:
                raise
            remaining = [i for i in remaining if i not in bad]
    return []


def _unknown_ids(exc: ClientError, candidates: Sequence[str]) -> set[str]:
    error = exc.response.get("Error", {})
    if not str(error.get("Code", "")).startswith("InvalidInstanceID."):
        return set()
    # "The instance IDs 'i-1, i-2' do not exist" / 'Invalid id: "i-bad"': match tokens against what we sent.
    return set(_TOKEN.findall(str(error.get("Message", "")))) & set(candidates)


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))
