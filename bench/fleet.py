"""A simulated fleet: the AWS emulator and the CML simulator as processes, N instances, imported into a database.

The emulator and the simulator are separate processes on loopback, as the remote systems would be. Instances are
launched from one CML AMI (so import finds them) with CloudWatch CPU data; every instance is a CML host on the
simulator. Growing the fleet adds instances to the same emulator, so one setup serves 100, 1,000 and 5,000.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
from sqlalchemy import delete

from cml_cloud_manager.config import Settings, load_settings
from cml_cloud_manager.jobs.context import Context
from cml_cloud_manager.jobs.integrations import build_integrations
from cml_cloud_manager.sandbox.run import sandbox_env
from cml_cloud_manager.sandbox.seed import AMI_NAME, REGION
from cml_cloud_manager.sandbox.services import ChildServer, aws_env, start_cml_simulator, start_moto
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.migrate import migrate
from cml_cloud_manager.storage.models import CommandRow
from cml_cloud_manager.workers.imports import import_matching
from cml_cloud_manager.workers.metrics import refresh_workers

LAUNCH_BATCH = 250  # instances per RunInstances call: big enough to be quick, small enough for moto
METRIC_BATCH = 100  # PutMetricData's limit per call


class Emulated:
    """EC2 + CloudWatch clients for the emulator, and the one CML AMI every bench instance is launched from."""

    def __init__(self, endpoint: str) -> None:
        env = aws_env()
        session = boto3.session.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"]
        )
        self.ec2: Any = session.client("ec2", region_name=REGION, endpoint_url=endpoint)
        self.cloudwatch: Any = session.client("cloudwatch", region_name=REGION, endpoint_url=endpoint)
        self.image: str | None = None

    def launch(self, count: int) -> list[str]:
        """Launch `count` more instances, with a CPU data point each; returns their ids."""
        if self.image is None:
            self.image = self.ec2.register_image(
                Name=AMI_NAME, Architecture="x86_64", RootDeviceName="/dev/sda1", VirtualizationType="hvm"
            )["ImageId"]
        ids: list[str] = []
        while len(ids) < count:
            batch = min(LAUNCH_BATCH, count - len(ids))
            answer = self.ec2.run_instances(
                ImageId=self.image, InstanceType="c5.2xlarge", MinCount=batch, MaxCount=batch
            )
            ids += [i["InstanceId"] for i in answer["Instances"]]
        data = [
            {"MetricName": "CPUUtilization", "Dimensions": [{"Name": "InstanceId", "Value": i}], "Value": 42.0}
            for i in ids
        ]
        for start in range(0, len(data), METRIC_BATCH):
            self.cloudwatch.put_metric_data(Namespace="AWS/EC2", MetricData=data[start : start + METRIC_BATCH])
        return ids


def seed(endpoint: str, count: int) -> list[str]:
    """`count` instances from a fresh CML AMI in the emulator at `endpoint` (one call, for one-off use)."""
    return Emulated(endpoint).launch(count)


def sandbox_settings(database_url: str, env: dict[str, str], **extra: object) -> Settings:
    """Settings for code run in the benchmark process against the emulator and simulator in `env`."""
    return load_settings(
        database_url=database_url,
        aws_endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_regions=[REGION],
        cml_url_template=env["CML_URL_TEMPLATE"],
        cml_password="admin",
        cml_verify_tls=False,
        **extra,
    )


class Fleet:
    """The emulator + simulator processes and the app settings that point at them. Use as a context manager."""

    def __init__(self, log_dir: Path | None = None) -> None:
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="bench-fleet-"))
        self.aws: ChildServer | None = None
        self.cml: ChildServer | None = None
        self.emulated: Emulated | None = None
        self.size = 0

    def __enter__(self) -> Fleet:
        self.aws = start_moto(self.log_dir)
        try:
            self.cml = start_cml_simulator(self.log_dir)
        except Exception:
            self.aws.stop()
            raise
        self.emulated = Emulated(self.aws.url)
        # The in-process job (jobs bench, import) reads AWS credentials from the environment, as boto3 does.
        os.environ.update(aws_env())
        return self

    def __exit__(self, *_: object) -> None:
        for server in (self.cml, self.aws):
            if server is not None:
                server.stop()

    @property
    def pids(self) -> dict[str, int]:
        assert self.aws is not None and self.cml is not None
        return {"aws-emulator": self.aws.proc.pid, "cml-simulator": self.cml.proc.pid}

    def app_env(self) -> dict[str, str]:
        """Environment for app processes: the sandbox settings, minus what each benchmark sets itself."""
        assert self.aws is not None and self.cml is not None
        env = sandbox_env(self.aws.url, self.cml.url)
        for name in (
            "DATABASE_URL",
            "AUTO_IMPORT_ENABLED",
            "AUTO_IMPORT_INTERVAL",
            "WORKER_METRICS_INTERVAL",
            "LABS_REFRESH_INTERVAL",
            "IDLE_DETECTION_INTERVAL",
        ):
            env.pop(name, None)
        return env

    def settings(self, database_url: str) -> Settings:
        return sandbox_settings(database_url, self.app_env(), log_level="WARNING")

    def grow(self, total: int) -> float:
        """Launch instances until the emulator holds `total`; returns the seconds it took."""
        assert self.emulated is not None
        began = time.perf_counter()
        if total > self.size:
            self.emulated.launch(total - self.size)
            self.size = total
        return time.perf_counter() - began


async def import_fleet(ctx: Context) -> int:
    """Import every bench instance, observe them once (pending -> running, CML available), then drop the
    commands that import and the first observation queued: they would otherwise run in the measured worker."""
    imported = (await import_matching(ctx, [REGION], "cml2-*", reason="bench")).model_dump()
    await refresh_workers(ctx)
    async with ctx.db.session() as session:
        await session.execute(delete(CommandRow))
    return len(imported["imported"])


async def prepare_database(fleet: Fleet, database_url: str) -> int:
    """Migrate `database_url` and import the fleet into it; returns how many workers were imported."""
    settings = fleet.settings(database_url)
    db = Database(settings)
    integrations = build_integrations(settings)
    try:
        await migrate(db)
        ctx = Context(db=db, settings=settings, integrations=integrations, process_id="bench")
        return await import_fleet(ctx)
    finally:
        await integrations.aclose()
        await db.dispose()
