"""CloudWatch adapter: latest CPU and memory per instance in batched GetMetricData calls, plus a seeder.

CPU comes from EC2 itself (AWS/EC2 CPUUtilization). Memory needs the CloudWatch agent on the worker
publishing CWAgent mem_used_percent with exactly one dimension, InstanceId (agent config: append_dimensions
with only "InstanceId"); a metric with more dimensions (ImageId, InstanceType...) is a different metric to
CloudWatch and would read as "no data".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from cml_cloud_manager.aws._convert import utc
from cml_cloud_manager.aws.session import AwsClients, chunked
from cml_cloud_manager.aws.types import InstanceMetrics

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import MetricDataQueryTypeDef, MetricDatumTypeDef

CPU_NAMESPACE = "AWS/EC2"
CPU_METRIC = "CPUUtilization"
MEMORY_NAMESPACE = "CWAgent"
MEMORY_METRIC = "mem_used_percent"

# GetMetricData takes at most 500 queries per call; each instance needs two (CPU and memory).
MAX_QUERIES_PER_CALL = 500
INSTANCES_PER_CALL = MAX_QUERIES_PER_CALL // 2
# PutMetricData takes up to 1,000 data points and 1 MB per call; stay well inside both.
DATUMS_PER_PUT = 500
DEFAULT_LOOKBACK = timedelta(minutes=30)


@dataclass(slots=True)
class _Latest:
    timestamp: datetime
    value: float


async def get_latest_metrics(
    clients: AwsClients,
    region: str,
    instance_ids: Sequence[str],
    *,
    period: int = 300,
    lookback: timedelta = DEFAULT_LOOKBACK,
    now: datetime | None = None,
) -> dict[str, InstanceMetrics]:
    """Newest CPU and memory averages (over `period` seconds) within `lookback`, for every requested instance.

    Every id gets an entry; values CloudWatch has no data for are None (a stopped instance, an agent not
    installed yet). 250 instances per call, the calls run concurrently.
    """
    ids = list(dict.fromkeys(instance_ids))
    if not ids:
        return {}
    end = _align(now or datetime.now(UTC), period, up=True)
    # Aligned to the period so CloudWatch serves pre-aggregated buckets and every call sees the same buckets.
    start = _align(end - max(lookback, timedelta(seconds=period)), period, up=False)
    batches = await asyncio.gather(
        *(
            clients.run_cloudwatch(region, _batch_query(chunk, start, end, period))
            for chunk in chunked(ids, INSTANCES_PER_CALL)
        )
    )
    return {metrics.instance_id: metrics for batch in batches for metrics in batch}


def _align(moment: datetime, period: int, *, up: bool) -> datetime:
    seconds = int(moment.timestamp())
    floor = seconds - seconds % period
    if up and floor != seconds:
        floor += period
    return datetime.fromtimestamp(floor, UTC)


def _batch_query(
    ids: Sequence[str], start: datetime, end: datetime, period: int
) -> Callable[[CloudWatchClient], list[InstanceMetrics]]:
    def call(client: CloudWatchClient) -> list[InstanceMetrics]:
        # Query ids must start with a lower-case letter; the index maps answers back to instances.
        queries: list[MetricDataQueryTypeDef] = []
        for index, instance_id in enumerate(ids):
            queries.append(_query(f"cpu{index}", CPU_NAMESPACE, CPU_METRIC, instance_id, period))
            queries.append(_query(f"mem{index}", MEMORY_NAMESPACE, MEMORY_METRIC, instance_id, period))
        latest: dict[str, _Latest] = {}
        pages = client.get_paginator("get_metric_data").paginate(
            MetricDataQueries=queries, StartTime=start, EndTime=end, ScanBy="TimestampDescending"
        )
        for page in pages:
            for result in page.get("MetricDataResults", []):
                # A query's points can continue on the next page: keep the newest seen so far.
                for stamp, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
                    moment = utc(stamp)
                    known = latest.get(result.get("Id", ""))
                    if moment is not None and (known is None or moment > known.timestamp):
                        latest[result.get("Id", "")] = _Latest(moment, float(value))
        return [
            _metrics(instance_id, latest.get(f"cpu{i}"), latest.get(f"mem{i}")) for i, instance_id in enumerate(ids)
        ]

    return call


def _query(query_id: str, namespace: str, metric: str, instance_id: str, period: int) -> MetricDataQueryTypeDef:
    return {
        "Id": query_id,
        "MetricStat": {
            "Metric": {
                "Namespace": namespace,
                "MetricName": metric,
                "Dimensions": [{"Name": "InstanceId", "Value": instance_id}],
            },
            "Period": period,
            "Stat": "Average",
        },
        "ReturnData": True,
    }


def _metrics(instance_id: str, cpu: _Latest | None, memory: _Latest | None) -> InstanceMetrics:
    stamps = [point.timestamp for point in (cpu, memory) if point is not None]
    return InstanceMetrics(
        instance_id=instance_id,
        cpu_percent=cpu.value if cpu else None,
        memory_percent=memory.value if memory else None,
        timestamp=max(stamps) if stamps else None,
    )


async def put_metric_data(clients: AwsClients, region: str, samples: Iterable[InstanceMetrics]) -> int:
    """Publish CPU (AWS/EC2) and memory (CWAgent) points per instance; returns how many points were sent.

    For the sandbox and tests against the AWS emulator: real CloudWatch refuses writes to AWS/ namespaces.
    A sample's None values are skipped; a sample without timestamp is stamped now.
    """
    by_namespace: dict[str, list[MetricDatumTypeDef]] = {CPU_NAMESPACE: [], MEMORY_NAMESPACE: []}
    for sample in samples:
        when = utc(sample.timestamp) or datetime.now(UTC)
        for namespace, metric, value in (
            (CPU_NAMESPACE, CPU_METRIC, sample.cpu_percent),
            (MEMORY_NAMESPACE, MEMORY_METRIC, sample.memory_percent),
        ):
            if value is not None:
                by_namespace[namespace].append(
                    {
                        "MetricName": metric,
                        "Dimensions": [{"Name": "InstanceId", "Value": sample.instance_id}],
                        "Timestamp": when,
                        "Value": float(value),
                        "Unit": "Percent",
                    }
                )

    def put(namespace: str, data: Sequence[MetricDatumTypeDef]) -> Callable[[CloudWatchClient], None]:
        def call(client: CloudWatchClient) -> None:
            client.put_metric_data(Namespace=namespace, MetricData=list(data))

        return call

    await asyncio.gather(
        *(
            clients.run_cloudwatch(region, put(namespace, chunk))
            for namespace, data in by_namespace.items()
            for chunk in chunked(data, DATUMS_PER_PUT)
        )
    )
    return sum(len(data) for data in by_namespace.values())
