"""boto3 response shapes -> `aws.types`; tolerant of missing keys (EC2 omits fields, never sends nulls)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cml_cloud_manager.aws.types import (
    CheckStatus,
    Image,
    Instance,
    InstanceState,
    InstanceStatus,
    SecurityGroupRef,
    StateChange,
)

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import (
        FilterTypeDef,
        ImageTypeDef,
        InstanceStateChangeTypeDef,
        InstanceStatusTypeDef,
        InstanceTypeDef,
        TagTypeDef,
    )


def ec2_filters(filters: Mapping[str, Sequence[str]] | None) -> list[FilterTypeDef]:
    return [{"Name": name, "Values": list(values)} for name, values in (filters or {}).items()]


def utc(value: datetime | None) -> datetime | None:
    """Aware UTC datetimes everywhere: botocore parses some timestamps into the host's local zone."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _tags(raw: Iterable[TagTypeDef] | None) -> dict[str, str]:
    return {tag["Key"]: tag.get("Value", "") for tag in raw or () if "Key" in tag}


def _text(value: str | None) -> str | None:
    # EC2 reports an absent DNS name or IP as "" on some states; callers should only see None.
    return value or None


def to_instance(raw: InstanceTypeDef, region: str) -> Instance:
    tags = _tags(raw.get("Tags"))
    placement = raw.get("Placement", {})
    return Instance(
        id=raw.get("InstanceId", ""),
        region=region,
        name=tags.get("Name") or None,
        state=InstanceState.parse(raw.get("State", {}).get("Name")),
        instance_type=raw.get("InstanceType", ""),
        image_id=raw.get("ImageId", ""),
        launch_time=utc(raw.get("LaunchTime")),
        availability_zone=_text(placement.get("AvailabilityZone")),
        public_ip=_text(raw.get("PublicIpAddress")),
        private_ip=_text(raw.get("PrivateIpAddress")),
        public_dns=_text(raw.get("PublicDnsName")),
        private_dns=_text(raw.get("PrivateDnsName")),
        subnet_id=_text(raw.get("SubnetId")),
        vpc_id=_text(raw.get("VpcId")),
        key_name=_text(raw.get("KeyName")),
        monitoring_state=raw.get("Monitoring", {}).get("State", "disabled"),
        security_groups=tuple(
            SecurityGroupRef(id=group.get("GroupId", ""), name=_text(group.get("GroupName")))
            for group in raw.get("SecurityGroups", [])
        ),
        tags=tags,
        state_reason=_text(raw.get("StateReason", {}).get("Code")) or _text(raw.get("StateTransitionReason")),
    )


def to_image(raw: ImageTypeDef, region: str) -> Image:
    created = raw.get("CreationDate")
    return Image(
        id=raw.get("ImageId", ""),
        region=region,
        name=_text(raw.get("Name")),
        description=_text(raw.get("Description")),
        creation_date=utc(datetime.fromisoformat(created)) if created else None,
        owner_id=_text(raw.get("OwnerId")),
        state=raw.get("State", "unknown"),
        architecture=_text(raw.get("Architecture")),
        tags=_tags(raw.get("Tags")),
    )


def to_status(raw: InstanceStatusTypeDef) -> InstanceStatus:
    return InstanceStatus(
        instance_id=raw.get("InstanceId", ""),
        state=InstanceState.parse(raw.get("InstanceState", {}).get("Name")),
        system_status=CheckStatus.parse(raw.get("SystemStatus", {}).get("Status")),
        instance_status=CheckStatus.parse(raw.get("InstanceStatus", {}).get("Status")),
        availability_zone=_text(raw.get("AvailabilityZone")),
    )


def to_change(raw: InstanceStateChangeTypeDef) -> StateChange:
    return StateChange(
        instance_id=raw.get("InstanceId", ""),
        previous_state=InstanceState.parse(raw.get("PreviousState", {}).get("Name")),
        current_state=InstanceState.parse(raw.get("CurrentState", {}).get("Name")),
    )
