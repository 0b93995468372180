"""AWS adapters: EC2 and CloudWatch calls that return our own types (see `aws.types`).

Modules: `session` (AwsClients, AwsConfig), `ec2` (describe/find/start/stop/terminate/tag/monitor),
`provision` (run_instance with cleanup), `cloudwatch` (latest metrics, seeding), `errors`, `types`.

Usage::

    async with AwsClients(AwsConfig(endpoint_url=None)) as clients:  # None: default chain / AWS_ENDPOINT_URL
        workers = await ec2.find_instances_by_ami_name(clients, "us-east-1", "cml2-*")
        metrics = await cloudwatch.get_latest_metrics(clients, "us-east-1", [w.id for w in workers])
"""

from cml_cloud_manager.aws.errors import (
    AwsAuthError,
    AwsError,
    AwsThrottled,
    AwsUnreachable,
    ImageNotFound,
    InstanceNotFound,
    InstanceStateConflict,
    ProvisioningFailed,
    translate,
)
from cml_cloud_manager.aws.session import AwsClients, AwsConfig
from cml_cloud_manager.aws.types import (
    CheckStatus,
    Image,
    Instance,
    InstanceMetrics,
    InstanceState,
    InstanceStatus,
    SecurityGroupRef,
    StateChange,
)

__all__ = [
    "AwsAuthError",
    "AwsClients",
    "AwsConfig",
    "AwsError",
    "AwsThrottled",
    "AwsUnreachable",
    "CheckStatus",
    "Image",
    "ImageNotFound",
    "Instance",
    "InstanceMetrics",
    "InstanceNotFound",
    "InstanceState",
    "InstanceStateConflict",
    "InstanceStatus",
    "ProvisioningFailed",
    "SecurityGroupRef",
    "StateChange",
    "translate",
]
