"""`Database.rows`: the hot reads give the same rows on asyncpg directly as through SQLAlchemy."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.migrate import migrate
from cml_cloud_manager.workers import service as workers

from ..conftest import BACKEND, make_settings


async def _two_workers(db: Database) -> None:
    async with db.session() as session:
        for name in ("a", "b"):
            row = workers.create_row(
                name=name,
                aws_region="us-east-1",
                aws_instance_id=f"i-{name}",
                status="running",
                tags={"team": "net", "n": 1.5},
                details={"nested": {"list": [1, None, "x"]}},
                cpu_percent=12.5,
                launched_at=datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC),
            )
            await workers.add(session, row, reason="test")


@pytest.mark.skipif(BACKEND != "postgres", reason="the driver-level path exists on PostgreSQL only")
async def test_driver_rows_match_sqlalchemy_rows(db: Database) -> None:
    await _two_workers(db)
    statement = workers._PAGE_QUERIES[False, True]
    params = {"region": None, "status": "running", "limit": 10, "offset": 0}
    assert db.hot_reads is not None
    hot = [tuple(row) for row in await db.rows(statement, params)]
    async with db.read_engine.connect() as conn:
        via_sqlalchemy = [tuple(row) for row in (await conn.execute(statement, params)).all()]
    assert len(hot) == 2 and hot == via_sqlalchemy
    assert [type(value) for value in hot[0]] == [type(value) for value in via_sqlalchemy[0]]


async def test_a_page_and_a_worker_read_back_what_was_written(db: Database) -> None:
    await _two_workers(db)
    page = await workers.list_page(db, status="running")
    assert [item["name"] for item in page["items"]] == ["a", "b"] and page["total"] == 2
    first = page["items"][0]
    assert first["tags"] == {"team": "net", "n": 1.5} and first["details"] == {"nested": {"list": [1, None, "x"]}}
    assert first["launched_at"] == datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)
    one = await workers.read(db, first["id"])
    assert one.model_dump() == first
    assert (await workers.list_page(db, offset=5))["total"] == 2


@pytest.mark.skipif(BACKEND != "postgres", reason="the driver-level path exists on PostgreSQL only")
async def test_url_options_reach_both_pools_as_the_engine_reads_them(database_url: str) -> None:
    # `ssl` is an asyncpg option the engine passes on; `prepared_statement_cache_size` is SQLAlchemy's own.
    settings = make_settings(f"{database_url}?ssl=disable&prepared_statement_cache_size=50")
    database = Database(settings, source="cml-cloud-manager/test")
    try:
        await migrate(database)
        await _two_workers(database)
        assert (await workers.list_page(database))["total"] == 2
        assert database.hot_reads is not None
        assert database.hot_reads.connect_kwargs["ssl"] == "disable"
        assert "prepared_statement_cache_size" not in database.hot_reads.connect_kwargs
    finally:
        await database.dispose()
