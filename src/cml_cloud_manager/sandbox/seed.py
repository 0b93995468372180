"""A demo fleet in the AWS emulator: a CML AMI, instances tagged as CML workers, CloudWatch data that moves."""

from __future__ import annotations

import logging
import math
import random
import threading
from datetime import UTC, datetime
from typing import Any

import boto3

from .services import aws_env

log = logging.getLogger(__name__)

AMI_NAME = "cml2-2.9.0-sandbox"
REGION = "us-east-1"
FLEET = [
    ("cml-lab-east-1", "c5.2xlarge", "running"),
    ("cml-lab-east-2", "c5.2xlarge", "running"),
    ("cml-training-1", "m5.4xlarge", "running"),
    ("cml-training-2", "m5.4xlarge", "stopped"),
    ("cml-dev-1", "c5.xlarge", "running"),
]


def _client(service: str, endpoint: str) -> Any:
    env = aws_env()
    return boto3.session.Session().client(  # type: ignore[call-overload]
        service,
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def seed_fleet(endpoint: str) -> list[str]:
    """Register the CML AMI and launch the demo instances; returns their ids."""
    ec2 = _client("ec2", endpoint)
    image = ec2.register_image(
        Name=AMI_NAME,
        Description="Cisco Modeling Labs 2.9 (sandbox)",
        Architecture="x86_64",
        RootDeviceName="/dev/sda1",
        VirtualizationType="hvm",
    )["ImageId"]
    ids: list[str] = []
    for name, instance_type, state in FLEET:
        answer = ec2.run_instances(
            ImageId=image,
            InstanceType=instance_type,
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": "Name", "Value": name}, {"Key": "Purpose", "Value": "cml-worker"}],
                }
            ],
        )
        instance_id = answer["Instances"][0]["InstanceId"]
        ids.append(instance_id)
        if state == "stopped":
            ec2.stop_instances(InstanceIds=[instance_id])
    log.info("sandbox: seeded AMI %s (%s) and %d instances", AMI_NAME, image, len(ids))
    return ids


def put_metrics(endpoint: str, instance_ids: list[str], step: int) -> None:
    """One round of CPU (AWS/EC2) and memory (CWAgent) data points; values drift like a busy lab host."""
    cloudwatch = _client("cloudwatch", endpoint)
    now = datetime.now(UTC)
    rng = random.Random(step)
    for index, instance_id in enumerate(instance_ids):
        wave = 35 + 25 * math.sin((step + index * 3) / 4)
        dims = [{"Name": "InstanceId", "Value": instance_id}]
        cloudwatch.put_metric_data(
            Namespace="AWS/EC2",
            MetricData=[
                {
                    "MetricName": "CPUUtilization",
                    "Dimensions": dims,
                    "Timestamp": now,
                    "Value": wave + rng.uniform(0, 8),
                }
            ],
        )
        cloudwatch.put_metric_data(
            Namespace="CWAgent",
            MetricData=[
                {"MetricName": "mem_used_percent", "Dimensions": dims, "Timestamp": now, "Value": 40 + wave / 2}
            ],
        )


class MetricsFeeder(threading.Thread):
    """Keeps CloudWatch data changing while the sandbox runs."""

    def __init__(self, endpoint: str, instance_ids: list[str], every: float = 30.0) -> None:
        super().__init__(name="sandbox-metrics", daemon=True)
        self.endpoint, self.instance_ids, self.every = endpoint, instance_ids, every
        self.stopped = threading.Event()

    def run(self) -> None:
        step = 0
        while not self.stopped.is_set():
            try:
                put_metrics(self.endpoint, self.instance_ids, step)
            except Exception as exc:  # the demo goes on without fresh numbers
                log.warning("sandbox: could not put CloudWatch data: %s", exc)
            step += 1
            self.stopped.wait(self.every)
