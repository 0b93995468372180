"""The AWS emulator's indexed GetMetricData answers exactly what moto's own does, on the same stored points."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto.cloudwatch.exceptions import ValidationError
from moto.cloudwatch.models import CloudWatchBackend

from cml_cloud_manager.sandbox.aws_emulator import _moto_get_metric_data, get_metric_data

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
INSTANCES = [f"i-{n:017x}" for n in range(1, 31)]


def _backend() -> CloudWatchBackend:
    """Points of two metrics in two namespaces, some with a unit, a few with two dimensions, over 40 minutes."""
    rng = random.Random(20)
    backend = CloudWatchBackend("us-east-1", "123456789012")
    for _ in range(600):
        instance = rng.choice(INSTANCES)
        dimensions = [{"Name": "InstanceId", "Value": instance}]
        if rng.random() < 0.05:
            dimensions.append({"Name": "ImageId", "Value": "ami-1"})
        namespace, name = rng.choice([("AWS/EC2", "CPUUtilization"), ("CWAgent", "mem_used_percent")])
        if rng.random() < 0.05:  # moto matches a query with dimensions whatever the namespace: so must we
            namespace = "Other"
        datum: dict[str, Any] = {
            "MetricName": name,
            "Dimensions": dimensions,
            "Timestamp": NOW - timedelta(seconds=rng.uniform(0, 2400)),
            "Value": round(rng.uniform(0, 100), 3),
        }
        if rng.random() < 0.5:
            datum["Unit"] = "Percent"
        backend.put_metric_data(namespace, [datum])
    return backend


def _queries(stat: str, period: int, unit: str | None) -> list[dict[str, Any]]:
    queries = []
    for n, instance in enumerate(INSTANCES):
        for name, namespace in (("CPUUtilization", "AWS/EC2"), ("mem_used_percent", "CWAgent")):
            metric_stat: dict[str, Any] = {
                "Metric": {
                    "Namespace": namespace,
                    "MetricName": name,
                    "Dimensions": [{"Name": "InstanceId", "Value": instance}],
                },
                "Period": str(period),
                "Stat": stat,
            }
            if unit:
                metric_stat["Unit"] = unit
            query: dict[str, Any] = {"Id": f"q{n}{name[:3]}", "MetricStat": metric_stat}
            if n % 7 == 0:
                query["ReturnData"] = False
            if n % 5 == 0:
                query["Label"] = f"label {n}"
            queries.append(query)
    return queries


@pytest.mark.parametrize("stat", ["Average", "Maximum", "Minimum", "Sum", "SampleCount"])
@pytest.mark.parametrize(("period", "unit"), [(300, None), (60, "Percent"), (600, None)])
@pytest.mark.parametrize("scan_by", ["TimestampAscending", "TimestampDescending"])
def test_indexed_answers_equal_moto_s(stat: str, period: int, unit: str | None, scan_by: str) -> None:
    backend = _backend()
    queries = _queries(stat, period, unit)
    start, end = NOW - timedelta(minutes=30), NOW + timedelta(minutes=1)

    ours = get_metric_data(backend, queries, start, end, scan_by)

    assert ours == _moto_get_metric_data(backend, queries, start, end, scan_by)
    assert sum(len(result["values"]) for result in ours) > len(ours)  # the comparison saw data, not only empties


def test_other_queries_and_bad_ranges_are_moto_s() -> None:
    backend = _backend()
    expression = [*_queries("Average", 300, None)[:2], {"Id": "e1", "Expression": "q0CPU * 2"}]
    start, end = NOW - timedelta(minutes=30), NOW

    assert get_metric_data(backend, expression, start, end) == _moto_get_metric_data(backend, expression, start, end)
    with pytest.raises(ValidationError):
        get_metric_data(backend, _queries("Average", 300, None), end, end)
