"""CloudWatch round trips against a real moto server, and NextToken paging with botocore's Stubber."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from botocore.stub import Stubber

from cml_cloud_manager.aws import cloudwatch
from cml_cloud_manager.aws.session import AwsClients, AwsConfig
from cml_cloud_manager.aws.types import InstanceMetrics

REGION = "us-east-1"
CountCalls = Callable[[str, str], list[int]]


def fake_ids(count: int) -> list[str]:
    # CloudWatch does not check that instances exist, so metrics for a large fleet need no EC2 setup.
    return [f"i-{n:017x}" for n in range(1, count + 1)]


async def test_put_then_get_latest_metrics_for_a_large_fleet_in_batches(
    clients: AwsClients, count_calls: CountCalls
) -> None:
    ids = fake_ids(300)  # 600 queries: more than one GetMetricData call can carry
    now = datetime.now(UTC)
    sent = await cloudwatch.put_metric_data(
        clients,
        REGION,
        [
            InstanceMetrics(iid, cpu_percent=n % 100, memory_percent=50 + n % 50, timestamp=now)
            for n, iid in enumerate(ids)
        ],
    )
    calls = count_calls("cloudwatch", "GetMetricData")

    metrics = await cloudwatch.get_latest_metrics(clients, REGION, ids)

    assert sent == 600
    assert len(calls) == 2
    assert set(metrics) == set(ids)
    for n, iid in enumerate(ids):
        assert metrics[iid].cpu_percent == pytest.approx(n % 100)
        assert metrics[iid].memory_percent == pytest.approx(50 + n % 50)
        stamp = metrics[iid].timestamp
        assert stamp is not None and stamp.tzinfo == UTC and abs(stamp - now) < timedelta(minutes=10)


async def test_missing_data_is_none_not_an_error(clients: AwsClients) -> None:
    cpu_only, memory_only, silent = fake_ids(3)
    await cloudwatch.put_metric_data(
        clients,
        REGION,
        [
            InstanceMetrics(cpu_only, cpu_percent=12.5, memory_percent=None, timestamp=None),
            InstanceMetrics(memory_only, cpu_percent=None, memory_percent=61.0, timestamp=None),
        ],
    )

    metrics = await cloudwatch.get_latest_metrics(clients, REGION, [cpu_only, memory_only, silent])

    assert (metrics[cpu_only].cpu_percent, metrics[cpu_only].memory_percent) == (12.5, None)
    assert (metrics[memory_only].cpu_percent, metrics[memory_only].memory_percent) == (None, 61.0)
    assert metrics[silent] == InstanceMetrics(silent, None, None, None)


async def test_the_newest_period_wins(clients: AwsClients) -> None:
    [iid] = fake_ids(1)
    now = datetime.now(UTC)
    await cloudwatch.put_metric_data(
        clients,
        REGION,
        [
            InstanceMetrics(iid, cpu_percent=90.0, memory_percent=90.0, timestamp=now - timedelta(minutes=20)),
            InstanceMetrics(iid, cpu_percent=10.0, memory_percent=30.0, timestamp=now - timedelta(minutes=2)),
            InstanceMetrics(iid, cpu_percent=99.0, memory_percent=99.0, timestamp=now - timedelta(hours=3)),
        ],
    )

    metrics = await cloudwatch.get_latest_metrics(clients, REGION, [iid], period=60)

    assert (metrics[iid].cpu_percent, metrics[iid].memory_percent) == (10.0, 30.0)


async def test_no_ids_means_no_call(clients: AwsClients, count_calls: CountCalls) -> None:
    calls = count_calls("cloudwatch", "GetMetricData")

    assert await cloudwatch.get_latest_metrics(clients, REGION, []) == {}
    assert calls == []


async def test_results_split_over_next_token_pages_are_merged() -> None:
    # moto never pages GetMetricData; botocore's Stubber plays CloudWatch to prove NextToken is followed.
    clients = AwsClients(AwsConfig(access_key_id="testing", secret_access_key="testing"))
    try:
        client = clients.client("cloudwatch", REGION)
        t1 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
        t2 = t1 + timedelta(minutes=5)
        with Stubber(client) as stubber:
            stubber.add_response(
                "get_metric_data",
                {
                    "MetricDataResults": [
                        {"Id": "cpu0", "Timestamps": [t1], "Values": [40.0], "StatusCode": "PartialData"},
                        {"Id": "mem0", "Timestamps": [], "Values": [], "StatusCode": "PartialData"},
                    ],
                    "NextToken": "page-2",
                },
            )
            stubber.add_response(
                "get_metric_data",
                {
                    "MetricDataResults": [
                        {"Id": "cpu0", "Timestamps": [t2], "Values": [45.0], "StatusCode": "Complete"},
                        {"Id": "mem0", "Timestamps": [t1], "Values": [70.0], "StatusCode": "Complete"},
                    ]
                },
            )
            metrics = await cloudwatch.get_latest_metrics(clients, REGION, ["i-1"], now=t2)
            stubber.assert_no_pending_responses()
    finally:
        await clients.aclose()

    assert metrics["i-1"] == InstanceMetrics("i-1", cpu_percent=45.0, memory_percent=70.0, timestamp=t2)
