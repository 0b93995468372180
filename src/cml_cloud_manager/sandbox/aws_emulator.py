"""The sandbox's AWS emulator: moto's server, taught the EC2 calls we use that moto does not implement.

Run it as moto's server, with its arguments: `python -m cml_cloud_manager.sandbox.aws_emulator -H 127.0.0.1 -p 5000`.
The additions answer as EC2 does and keep their state in moto's own model, so the rest of moto (DescribeInstances,
the reset API) sees it:

- MonitorInstances / UnmonitorInstances: switch an instance's detailed monitoring. EC2 answers `pending` and
  `disabling` while it changes; the emulator records the end state at once, so DescribeInstances reports
  `enabled` or `disabled` right after.

And one call made fast enough to stand in for AWS at fleet size:

- GetMetricData: moto compares every query with every stored data point, once per period (at 1,000 workers
  worker-metrics' four calls cost the emulator ~0.8 s of CPU, on the host the product runs on). Queries of one
  metric with one dimension, the only kind worker-metrics makes, are answered from the points indexed by
  metric and dimension, with moto's own statistics and answer; any other query goes to moto as before.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from moto.cloudwatch.models import CloudWatchBackend, MetricDatumBase, Statistics
from moto.core.responses import ActionResult
from moto.ec2.responses.monitoring import Monitoring

_moto_get_metric_data = CloudWatchBackend.get_metric_data


def _set_monitoring(response: Any, *, enabled: bool) -> ActionResult:
    instance_ids = response._get_param("InstanceIds", [])
    response.error_on_dryrun()
    # Unknown ids fail the whole call with InvalidInstanceID.NotFound, as on EC2.
    instances = response.ec2_backend.get_multi_instances_by_id(instance_ids)
    for instance in instances:
        instance.monitoring_state = "enabled" if enabled else "disabled"
    answer = "pending" if enabled else "disabling"
    return ActionResult(
        {"InstanceMonitorings": [{"InstanceId": i.id, "Monitoring": {"State": answer}} for i in instances]}
    )


def _monitor_instances(self: Any) -> ActionResult:
    return _set_monitoring(self, enabled=True)


def _unmonitor_instances(self: Any) -> ActionResult:
    return _set_monitoring(self, enabled=False)


def _one_dimension(query: dict[str, Any]) -> tuple[str, str, str] | None:
    """(metric name, dimension name, value) of a MetricStat query on exactly one dimension with a value."""
    metric = query.get("MetricStat", {}).get("Metric", {})
    dimensions = metric.get("Dimensions") or []
    if "Expression" in query or len(dimensions) != 1 or dimensions[0].get("Value") is None:
        return None
    return metric["MetricName"], dimensions[0]["Name"], dimensions[0]["Value"]


def get_metric_data(
    backend: CloudWatchBackend,
    queries: list[dict[str, Any]],
    start_time: datetime,
    end_time: datetime,
    scan_by: str = "TimestampAscending",
) -> list[dict[str, Any]]:
    """moto's GetMetricData for one-dimension MetricStat queries, without comparing every query with every point.

    Matches as moto does: a point counts for a query with a dimension when its metric name is the query's and
    its one dimension equals the query's (a point's dimension without a value matches any), whatever its
    namespace; periods from `start_time` while not after `end_time`; points in stored order."""
    keys = [_one_dimension(query) for query in queries]
    if not queries or any(key is None for key in keys):
        return _moto_get_metric_data(backend, queries, start_time, end_time, scan_by)
    _moto_get_metric_data(backend, [], start_time, end_time, scan_by)  # moto's own checks of the time range
    start_time, end_time = start_time.replace(microsecond=0), end_time.replace(microsecond=0)
    exact: dict[tuple[str | None, ...], list[tuple[int, MetricDatumBase]]] = defaultdict(list)
    any_value: dict[tuple[str | None, ...], list[tuple[int, MetricDatumBase]]] = defaultdict(list)
    for order, point in enumerate(backend.get_all_metrics()):
        if start_time <= point.timestamp < end_time and len(point.dimensions) == 1:
            dimension = point.dimensions[0]
            if dimension.value is None:
                any_value[(point.name, dimension.name)].append((order, point))
            else:
                exact[(point.name, dimension.name, dimension.value)].append((order, point))
    results = []
    for query, key in zip(queries, keys, strict=True):
        assert key is not None
        name, dimension_name, _ = key
        stat_query = query["MetricStat"]
        points = [p for _, p in sorted(exact.get(key, []) + any_value.get((name, dimension_name), []))]
        if unit := stat_query.get("Unit"):
            points = [p for p in points if p.unit == unit]
        stat, delta = stat_query["Stat"], timedelta(seconds=int(stat_query["Period"]))
        values: list[Any] = []
        timestamps: list[datetime] = []
        period_start = start_time
        while period_start <= end_time:
            inside = [p for p in points if period_start <= p.timestamp < period_start + delta]
            if inside:
                stats = Statistics([stat], period_start)
                stats.metric_data = inside
                values.append(stats.get_statistics_for_type(stat))
                timestamps.append(stats.timestamp)
            period_start += delta
        if scan_by == "TimestampDescending":
            values.reverse()
            timestamps.reverse()
        if query.get("ReturnData", True):
            label = query.get("Label") or f"{name} {stat}"
            results.append(
                {
                    "id": query["Id"],
                    "label": label,
                    "values": values,
                    "timestamps": timestamps,
                    "status_code": "Complete",
                }
            )
    return results


def install() -> None:
    """Replace moto's not-implemented handlers (the EC2 response class inherits them from `Monitoring`) and its
    GetMetricData."""
    setattr(Monitoring, "monitor_instances", _monitor_instances)  # noqa: B010 - mypy refuses method assignment
    setattr(Monitoring, "unmonitor_instances", _unmonitor_instances)  # noqa: B010
    setattr(CloudWatchBackend, "get_metric_data", get_metric_data)  # noqa: B010


def main(argv: list[str] | None = None) -> None:
    install()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
