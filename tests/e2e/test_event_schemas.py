"""The check every end-to-end and UI stack gets at its end (`event_schemas`) catches what it is there for."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete

from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import EventRow

from . import event_schemas

pytestmark = pytest.mark.e2e


async def test_an_unknown_type_and_data_its_schema_refuses_are_caught(
    start: Any, db_of: Database, database_url: str, tmp_path: Path
) -> None:
    api = await start("api")
    assert await event_schemas.fetch(api.url)
    now = datetime.now(UTC)
    bad = [
        EventRow(type="worker.exploded", source="test", time=now, data={}),
        EventRow(type="worker.deleted", source="test", time=now, data={"name": "w", "instance_terminated": "no"}),
        EventRow(type="worker.deleted", source="test", time=now, data={"name": "w", "instance_terminated": False}),
    ]
    async with db_of.session() as session:
        session.add_all(bad)
    found = await event_schemas.problems(database_url, tmp_path)
    assert len(found) == 2, found
    assert found[0].endswith("worker.exploded: no schema is published for this type")
    assert "worker.deleted: $.instance_terminated: 'no' is not of type 'boolean'" in found[1]
    async with db_of.session() as session:  # this test's own mess: the check at its end must find none
        await session.execute(delete(EventRow).where(EventRow.source == "test"))
