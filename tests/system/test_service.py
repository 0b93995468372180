"""Runtime overrides stored in the database: set, changed, removed, each change announced in the same
transaction."""

from __future__ import annotations

from sqlalchemy import select

from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import EventRow
from cml_cloud_manager.system import service


async def test_overrides_are_set_changed_and_removed(db: Database) -> None:
    async with db.session() as session:
        assert await service.get_all(session) == {}
        first = await service.update(
            session, {"jobs.housekeeping.enabled": False, "jobs.auto-import.interval_seconds": 60.0}, actor="alice"
        )
    assert first == {"jobs.auto-import.interval_seconds": 60.0, "jobs.housekeeping.enabled": False}
    assert list(first) == sorted(first)  # by key

    async with db.session() as session:
        second = await service.update(
            session,
            {
                "jobs.auto-import.interval_seconds": 90.0,
                "jobs.housekeeping.enabled": None,
                "jobs.labs-refresh.enabled": None,
            },
            actor="bob",
        )
    # Removing an override that was never set is not an error.
    assert second == {"jobs.auto-import.interval_seconds": 90.0}
    async with db.session(write=False) as session:
        assert await service.get_all(session) == second
        events = (await session.scalars(select(EventRow).order_by(EventRow.seq))).all()
    assert [(e.type, e.data["by"]) for e in events] == [
        ("system.settings.updated", "alice"),
        ("system.settings.updated", "bob"),
    ]
    assert events[1].data["changes"] == {
        "jobs.auto-import.interval_seconds": 90.0,
        "jobs.housekeeping.enabled": None,
        "jobs.labs-refresh.enabled": None,
    }


async def test_a_change_that_fails_leaves_neither_the_override_nor_its_event(db: Database) -> None:
    class Interrupted(Exception):
        pass

    try:
        async with db.session() as session:
            await service.update(session, {"jobs.housekeeping.enabled": False}, actor="alice")
            raise Interrupted
    except Interrupted:
        pass
    async with db.session(write=False) as session:
        assert await service.get_all(session) == {}
        assert (await session.scalars(select(EventRow))).all() == []
