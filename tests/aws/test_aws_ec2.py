"""EC2 adapter against a real moto server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC

import pytest

from cml_cloud_manager.aws import ec2
from cml_cloud_manager.aws.errors import InstanceNotFound, InstanceStateConflict
from cml_cloud_manager.aws.session import AwsClients
from cml_cloud_manager.aws.types import CheckStatus, InstanceState

from .conftest import Ec2Stub

REGION = "us-east-1"

RegisterAmi = Callable[..., Awaitable[str]]
Launch = Callable[..., Awaitable[list[str]]]
CountCalls = Callable[[str, str], list[int]]


async def test_describe_instances_pages_through_more_than_one_page(
    clients: AwsClients, register_ami: RegisterAmi, launch: Launch, count_calls: CountCalls
) -> None:
    ami = await register_ami()
    ids = [iid for _ in range(12) for iid in await launch(ami)]  # one reservation each: moto pages those
    calls = count_calls("ec2", "DescribeInstances")

    found = await ec2.describe_instances(clients, REGION, page_size=5)

    assert sorted(i.id for i in found) == sorted(ids)
    assert len(calls) == 3


async def test_describe_instances_maps_every_field(
    clients: AwsClients, register_ami: RegisterAmi, launch: Launch
) -> None:
    ami = await register_ami()
    vpc = await clients.run_ec2(REGION, lambda c: c.create_vpc(CidrBlock="10.7.0.0/16"))
    vpc_id = vpc["Vpc"]["VpcId"]
    subnet = await clients.run_ec2(
        REGION,
        lambda c: c.create_subnet(VpcId=vpc_id, CidrBlock="10.7.1.0/24", AvailabilityZone="us-east-1b"),
    )
    group = await clients.run_ec2(
        REGION, lambda c: c.create_security_group(GroupName="cml", Description="cml", VpcId=vpc_id)
    )
    await clients.run_ec2(REGION, lambda c: c.create_key_pair(KeyName="ops"))
    [iid] = await launch(
        ami,
        SubnetId=subnet["Subnet"]["SubnetId"],
        SecurityGroupIds=[group["GroupId"]],
        KeyName="ops",
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [{"Key": "Name", "Value": "worker-1"}, {"Key": "team", "Value": "x"}],
            }
        ],
    )

    [instance] = await ec2.describe_instances(clients, REGION, instance_ids=[iid])

    assert instance.id == iid
    assert instance.region == REGION
    assert instance.name == "worker-1"
    assert instance.tags == {"Name": "worker-1", "team": "x"}
    assert instance.state is InstanceState.RUNNING
    assert instance.instance_type == "t3.micro"
    assert instance.image_id == ami
    assert instance.subnet_id == subnet["Subnet"]["SubnetId"]
    assert instance.vpc_id == vpc_id
    assert instance.availability_zone == "us-east-1b"
    assert instance.private_ip is not None and instance.private_ip.startswith("10.7.1.")
    assert instance.private_dns
    assert instance.key_name == "ops"
    assert [g.id for g in instance.security_groups] == [group["GroupId"]]
    assert instance.security_groups[0].name == "cml"
    assert instance.monitoring_state == "disabled" and not instance.detailed_monitoring
    assert instance.launch_time is not None and instance.launch_time.tzinfo == UTC


async def test_describe_by_ids_is_chunked(
    clients: AwsClients,
    register_ami: RegisterAmi,
    launch: Launch,
    count_calls: CountCalls,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ec2, "DESCRIBE_IDS_PER_CALL", 4)
    ids = await launch(await register_ami(), count=10)
    calls = count_calls("ec2", "DescribeInstances")

    found = await ec2.describe_instances(clients, REGION, instance_ids=ids + ids[:2])  # duplicates collapse

    assert sorted(i.id for i in found) == sorted(ids)
    assert len(calls) == 3


async def test_unknown_instance_id_raises_instance_not_found(
    clients: AwsClients, register_ami: RegisterAmi, launch: Launch
) -> None:
    [known] = await launch(await register_ami())
    unknown = "i-0123456789abcdef0"

    with pytest.raises(InstanceNotFound) as caught:
        await ec2.describe_instances(clients, REGION, instance_ids=[known, unknown])
    assert caught.value.instance_ids == (unknown,)
    assert caught.value.status_code == 404
    assert unknown in caught.value.message

    with pytest.raises(InstanceNotFound):
        await ec2.get_instance(clients, REGION, unknown)


async def test_missing_ok_drops_unknown_and_malformed_ids(
    clients: AwsClients, register_ami: RegisterAmi, launch: Launch
) -> None:
    [known] = await launch(await register_ami())

    found = await ec2.describe_instances(
        clients, REGION, instance_ids=["i-0123456789abcdef0", known, "i-00000000000000001"], missing_ok=True
    )

    assert [i.id for i in found] == [known]
    assert await ec2.describe_instances(clients, REGION, instance_ids=["i-0123456789abcdef0"], missing_ok=True) == []


async def test_filters_and_regions(clients: AwsClients, register_ami: RegisterAmi, launch: Launch) -> None:
    ami = await register_ami()
    running, stopped = await launch(ami, count=2)
    await ec2.stop_instances(clients, REGION, [stopped])
    other_region = await launch(await register_ami(region="eu-west-1"), region="eu-west-1")

    only_stopped = await ec2.describe_instances(clients, REGION, filters={"instance-state-name": ["stopped"]})
    in_eu = await ec2.describe_instances(clients, "eu-west-1")

    assert [i.id for i in only_stopped] == [stopped]
    assert [i.id for i in in_eu] == other_region
    assert running not in {i.id for i in in_eu}


async def test_describe_images_by_name_pattern_and_owner(clients: AwsClients, register_ami: RegisterAmi) -> None:
    cml_a = await register_ami("cml2-2.8.1-x86_64")
    cml_b = await register_ami("cml2-2.9.0-x86_64")
    await register_ami("ubuntu-22.04")

    images = await ec2.describe_images(clients, REGION, owners=["self"], name_pattern="cml2-*")
    by_id = await ec2.describe_images(clients, REGION, image_ids=[cml_a])

    assert sorted(i.id for i in images) == sorted([cml_a, cml_b])
    [image] = by_id
    assert image.name == "cml2-2.8.1-x86_64"
    assert image.description == "cml2-2.8.1-x86_64 (test)"
    assert image.owner_id == "123456789012"
    assert image.state == "available"
    assert image.creation_date is not None and image.creation_date.tzinfo == UTC


async def test_describe_images_refuses_to_list_every_public_ami(clients: AwsClients) -> None:
    with pytest.raises(ValueError, match="needs image_ids, owners or name_pattern"):
        await ec2.describe_images(clients, REGION)


async def test_find_instances_by_ami_name_skips_other_amis_and_terminated(
    clients: AwsClients, register_ami: RegisterAmi, launch: Launch
) -> None:
    old_cml = await register_ami("cml2-2.8.1-x86_64")
    new_cml = await register_ami("cml2-2.9.0-x86_64")
    other = await register_ami("ubuntu-22.04")
    keep = await launch(old_cml) + await launch(new_cml, count=2)
    [gone] = await launch(new_cml)
    await launch(other)
    await ec2.stop_instances(clients, REGION, keep[:1])
    await ec2.terminate_instances(clients, REGION, [gone])

    found = await ec2.find_instances_by_ami_name(clients, REGION, "cml2-*", owners=["self"])

    assert sorted(i.id for i in found) == sorted(keep)
    assert await ec2.find_instances_by_ami_name(clients, REGION, "nothing-*") == []


async def test_stop_start_terminate_report_state_changes(
    clients: AwsClients,
    register_ami: RegisterAmi,
    launch: Launch,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ec2, "ACTION_IDS_PER_CALL", 2)  # five ids -> three batches
    ids = await launch(await register_ami(), count=5)

    stopped = await ec2.stop_instances(clients, REGION, ids)
    assert set(stopped) == set(ids)
    assert all(c.previous_state is InstanceState.RUNNING for c in stopped.values())
    assert all(c.current_state in (InstanceState.STOPPING, InstanceState.STOPPED) for c in stopped.values())
    assert {i.state for i in await ec2.describe_instances(clients, REGION, instance_ids=ids)} == {"stopped"}

    started = await ec2.start_instances(clients, REGION, ids[:2])
    assert {c.previous_state for c in started.values()} == {InstanceState.STOPPED}
    assert all(c.current_state in (InstanceState.PENDING, InstanceState.RUNNING) for c in started.values())

    terminated = await ec2.terminate_instances(clients, REGION, ids)
    assert {c.current_state for c in terminated.values()} <= {
        InstanceState.SHUTTING_DOWN,
        InstanceState.TERMINATED,
    }
    assert {i.state for i in await ec2.describe_instances(clients, REGION, instance_ids=ids)} == {"terminated"}


async def test_state_action_on_unknown_id_raises_instance_not_found(clients: AwsClients) -> None:
    with pytest.raises(InstanceNotFound) as caught:
        await ec2.start_instances(clients, REGION, ["i-0123456789abcdef0"])
    assert caught.value.instance_ids == ("i-0123456789abcdef0",)


async def test_create_and_delete_tags(clients: AwsClients, register_ami: RegisterAmi, launch: Launch) -> None:
    ids = await launch(await register_ami(), count=2)

    await ec2.create_tags(clients, REGION, ids, {"Name": "w", "owner": "lab-team", "keep": "yes"})
    await ec2.delete_tags(clients, REGION, ids, ["owner", "missing-key"])
    await ec2.delete_tags(clients, REGION, ids, [])  # must not wipe every tag

    for instance in await ec2.describe_instances(clients, REGION, instance_ids=ids):
        assert instance.tags == {"Name": "w", "keep": "yes"}
        assert instance.name == "w"


async def test_detailed_monitoring_turns_on_and_off(
    clients: AwsClients,
    register_ami: RegisterAmi,
    launch: Launch,
    count_calls: Callable[[str, str], list[int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ec2, "ACTION_IDS_PER_CALL", 2)
    ids = await launch(await register_ami(), count=3)
    monitor_calls, unmonitor_calls = count_calls("ec2", "MonitorInstances"), count_calls("ec2", "UnmonitorInstances")

    # EC2 answers with the state the change is in; DescribeInstances then shows where it ends.
    assert await ec2.set_monitoring(clients, REGION, [*ids, ids[0]], enabled=True) == dict.fromkeys(ids, "pending")
    assert {i.monitoring_state for i in await ec2.describe_instances(clients, REGION, instance_ids=ids)} == {"enabled"}
    assert await ec2.set_monitoring(clients, REGION, ids[:1], enabled=False) == {ids[0]: "disabling"}

    described = {i.id: i for i in await ec2.describe_instances(clients, REGION, instance_ids=ids)}
    assert [described[i].monitoring_state for i in ids] == ["disabled", "enabled", "enabled"]
    assert not described[ids[0]].detailed_monitoring and described[ids[1]].detailed_monitoring
    assert (len(monitor_calls), len(unmonitor_calls)) == (2, 1)  # three ids, two per call, duplicates dropped


async def test_monitoring_an_unknown_instance_names_it(clients: AwsClients) -> None:
    with pytest.raises(InstanceNotFound, match="i-0123456789abcdef0"):
        await ec2.set_monitoring(clients, REGION, ["i-0123456789abcdef0"], enabled=False)


async def test_a_monitoring_refusal_names_the_instance_and_the_aws_reason(
    ec2_stub: Ec2Stub, stub_clients: Callable[..., AwsClients]
) -> None:
    # What real EC2 may answer and the emulator never does: the loopback stub plays EC2 for it.
    reason = "Detailed monitoring is not supported for instances in this state."
    ec2_stub.fail(1, "UnsupportedOperation", status=400, message=reason)

    with pytest.raises(InstanceStateConflict) as refused:
        await ec2.set_monitoring(stub_clients(), REGION, ["i-00000000000000001"], enabled=True)

    assert refused.value.message == (
        f"Could not enable detailed monitoring of i-00000000000000001: MonitorInstances in {REGION}: {reason}"
    )
    assert refused.value.aws_code == "UnsupportedOperation" and refused.value.status_code == 409
    assert "Action=MonitorInstances" in ec2_stub.bodies[0]


async def test_launch_with_detailed_monitoring_shows_enabled(
    clients: AwsClients, register_ami: RegisterAmi, launch: Launch
) -> None:
    [iid] = await launch(await register_ami(), Monitoring={"Enabled": True})

    [instance] = await ec2.describe_instances(clients, REGION, instance_ids=[iid])

    assert instance.monitoring_state == "enabled" and instance.detailed_monitoring


async def test_describe_instance_status_checks(
    clients: AwsClients,
    register_ami: RegisterAmi,
    launch: Launch,
    count_calls: CountCalls,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ec2, "STATUS_IDS_PER_CALL", 2)
    ids = await launch(await register_ami(), count=5)
    await ec2.stop_instances(clients, REGION, ids[:1])
    calls = count_calls("ec2", "DescribeInstanceStatus")

    statuses = {s.instance_id: s for s in await ec2.describe_instance_status(clients, REGION, ids)}
    running_only = await ec2.describe_instance_status(clients, REGION, ids, include_all=False)

    assert set(statuses) == set(ids)
    assert len(calls) >= 3
    assert statuses[ids[0]].state is InstanceState.STOPPED
    for iid in ids[1:]:
        assert statuses[iid].state is InstanceState.RUNNING
        assert statuses[iid].system_status is CheckStatus.OK
        assert statuses[iid].instance_status is CheckStatus.OK
        assert statuses[iid].ok and not statuses[iid].impaired
    assert {s.instance_id for s in running_only} == set(ids[1:])


async def test_instance_status_of_unknown_ids(clients: AwsClients, register_ami: RegisterAmi, launch: Launch) -> None:
    [known] = await launch(await register_ami())
    unknown = "i-0123456789abcdef0"

    with pytest.raises(InstanceNotFound):
        await ec2.describe_instance_status(clients, REGION, [known, unknown])
    statuses = await ec2.describe_instance_status(clients, REGION, [unknown, known], missing_ok=True)

    assert [s.instance_id for s in statuses] == [known]


async def test_empty_id_lists_make_no_calls(clients: AwsClients, count_calls: CountCalls) -> None:
    calls = count_calls("ec2", "DescribeInstances")

    # An empty list means "none of them", never "all instances in the region".
    assert await ec2.describe_instances(clients, REGION, instance_ids=[]) == []
    assert await ec2.describe_instance_status(clients, REGION, []) == []
    assert await ec2.stop_instances(clients, REGION, []) == {}
    await ec2.create_tags(clients, REGION, [], {"a": "b"})
    assert calls == []
