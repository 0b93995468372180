"""Health checks answer within their deadline whatever the component does: up with its value, down with a
reason that names no host, and a check still running is shared by the probes that arrive meanwhile."""

from __future__ import annotations

import asyncio

from cml_cloud_manager.config import Settings
from cml_cloud_manager.events.notifier import Notifier
from cml_cloud_manager.health.checks import Check, HealthChecks
from cml_cloud_manager.jobs.processes import Work, beat
from cml_cloud_manager.storage.db import Database

from ..conftest import make_settings


async def test_a_check_is_up_with_its_value_or_down_naming_the_error_class_only() -> None:
    async def answers() -> int:
        return 42

    async def refuses() -> int:
        raise ConnectionRefusedError("connect to 10.0.0.7:5432 refused")

    up = await Check("db", answers).within(1)
    down = await Check("db", refuses).within(1)

    assert (up.state, up.value, up.reason) == ("up", 42, None)
    assert (down.state, down.value, down.reason) == ("down", None, "unreachable (ConnectionRefusedError)")


async def test_a_hung_component_costs_one_check_shared_by_every_probe_and_is_not_cancelled() -> None:
    release = asyncio.Event()
    started = 0

    async def hangs() -> str:
        nonlocal started
        started += 1
        await release.wait()
        return "late"

    check = Check("redis", hangs)
    outcomes = await asyncio.gather(*(check.within(0.05) for _ in range(5)))
    assert [(o.state, o.reason) for o in outcomes] == [("down", "no answer within 0.05 s")] * 5
    again = await check.within(0.05)
    assert (again.state, started) == ("down", 1)

    release.set()  # the check left running finishes, and the next probe has its answer
    recovered = await check.within(1)
    assert (recovered.state, recovered.value, started) == ("up", "late", 1)
    # Done now: the next probe asks again.
    assert (await check.within(1)).value == "late" and started == 2


async def test_a_closed_check_reports_stopping() -> None:
    async def hangs() -> None:
        await asyncio.Event().wait()

    check = Check("database", hangs)
    assert (await check.within(0.01)).state == "down"
    check.close()
    assert (await check.within(0)).reason == "stopping"


async def test_the_api_checks_read_the_fleet_and_ping_redis(db: Database, settings: Settings, redis_url: str) -> None:
    async with db.session() as session:
        now = await db.now(session)
        await beat(session, process_id="worker-1", role="worker", hostname="h", pid=1, now=now, jobs=Work())
        await beat(session, process_id="api-1", role="api", hostname="h", pid=2, now=now, jobs=Work())

    without_redis = Notifier("", "cmltest")
    database, redis = await HealthChecks(db, without_redis, settings).run()
    assert database.state == "up" and database.value is not None
    assert database.value.worker.replicas == 1
    assert [replica.id for replica in database.value.api_replicas] == ["api-1"]
    assert redis.state == "disabled"

    with_redis = Notifier(redis_url, "cmltest")
    try:
        _, redis = await HealthChecks(db, with_redis, settings).run()
    finally:
        await with_redis.aclose()
    assert redis.state == "up"

    nowhere = Notifier("redis://127.0.0.1:9/0", "cmltest")
    try:
        checks = HealthChecks(db, nowhere, make_settings(settings.database_url, health_timeout_seconds=2))
        database, redis = await checks.run()
    finally:
        await nowhere.aclose()
    assert database.state == "up" and redis.state == "down"
    assert redis.reason is not None and "127.0.0.1" not in redis.reason
