"""Lab records kept in step with what CML reports: what CML has is added or updated, what it no longer has is
removed, each change announced once; states keep a short history. CML here is the simulator over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from cml_cloud_manager.cml import CMLClient
from cml_cloud_manager.cml.simulator import Simulator
from cml_cloud_manager.labs import service
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import EventRow, LabRow

from ..simulated import add_worker, two_routers


async def sync(db: Database, cml: CMLClient, worker_id: str) -> dict[str, int]:
    labs = await cml.labs_with_details()
    async with db.session() as session:
        return (await service.sync(session, worker_id, labs)).model_dump()


async def lab_events(db: Database, after: int = 0) -> list[tuple[str, str]]:
    async with db.session(write=False) as session:
        rows = (await session.scalars(select(EventRow).where(EventRow.seq > after).order_by(EventRow.seq))).all()
    return [(e.type, e.data.get("title") or e.data.get("cml_lab_id", "")) for e in rows if e.type.startswith("lab.")]


async def last_seq(db: Database) -> int:
    async with db.session(write=False) as session:
        return max((await session.scalars(select(EventRow.seq))).all(), default=0)


async def records(db: Database, worker_id: str) -> dict[str, LabRow]:
    async with db.session(write=False) as session:
        return {row.title: row for row in await service.list_for(session, worker_id)}


async def test_what_cml_has_is_added_updated_and_removed(
    db: Database, host_cml: CMLClient, empty_host: str, sim: Simulator
) -> None:
    worker = await add_worker(db, empty_host)
    kept = (await host_cml.import_lab(two_routers("Kept"))).id
    gone = (await host_cml.import_lab(two_routers("Gone"))).id

    assert await sync(db, host_cml, worker.id) == {"added": 2, "updated": 0, "removed": 0}
    first = await records(db, worker.id)
    assert list(first) == ["Gone", "Kept"]  # by title
    lab = first["Kept"]
    assert (lab.cml_lab_id, lab.state, lab.node_count, lab.link_count, lab.owner) == (
        kept,
        "DEFINED_ON_CORE",
        2,
        1,
        "admin",
    )
    assert [h["reason"] for h in lab.history["states"]] == ["discovered"]
    assert sorted(await lab_events(db)) == [("lab.created", "Gone"), ("lab.created", "Kept")]

    # In CML meanwhile: one started, one deleted, one new, one retitled by its owner.
    seen = await last_seq(db)
    await host_cml.start_lab(kept)
    await host_cml.delete_lab(gone)
    new = (await host_cml.import_lab(two_routers("New"))).id
    sim.host(empty_host).labs[new].title = "New, retitled"

    assert await sync(db, host_cml, worker.id) == {"added": 1, "updated": 1, "removed": 1}
    second = await records(db, worker.id)
    assert list(second) == ["Kept", "New, retitled"]
    assert second["Kept"].state == "STARTED"
    assert [h["state"] for h in second["Kept"].history["states"]] == ["DEFINED_ON_CORE", "STARTED"]
    # Starting it also changed its modification time in CML: a state change and an update.
    assert sorted(await lab_events(db, seen)) == sorted(
        [
            ("lab.state.changed", "Kept"),
            ("lab.updated", "Kept"),
            ("lab.deleted", gone),
            ("lab.created", "New, retitled"),
        ]
    )

    # Retitled in CML after we knew it: an update, announced as one.
    seen = await last_seq(db)
    sim.host(empty_host).labs[kept].title = "Kept, renamed"
    assert await sync(db, host_cml, worker.id) == {"added": 0, "updated": 1, "removed": 0}
    assert await lab_events(db, seen) == [("lab.updated", "Kept, renamed")]

    # Nothing changed: nothing written, nothing announced.
    seen = await last_seq(db)
    assert await sync(db, host_cml, worker.id) == {"added": 0, "updated": 0, "removed": 0}
    assert await lab_events(db, seen) == []


async def test_a_sync_touches_only_its_own_workers_labs(db: Database, host_cml: CMLClient, empty_host: str) -> None:
    here = await add_worker(db, empty_host, name="here")
    elsewhere = await add_worker(db, "another-host", name="elsewhere")
    await host_cml.import_lab(two_routers("Here"))
    async with db.session() as session:
        session.add(service_row(elsewhere.id, "Elsewhere"))

    assert await sync(db, host_cml, here.id) == {"added": 1, "updated": 0, "removed": 0}
    assert list(await records(db, elsewhere.id)) == ["Elsewhere"]
    assert list(await records(db, here.id)) == ["Here"]


def service_row(worker_id: str, title: str) -> LabRow:
    """A lab record as a sync would have stored it."""
    now = datetime.now(UTC)
    return LabRow(worker_id=worker_id, cml_lab_id=f"cml-{title}", title=title, created_at=now, updated_at=now)


async def test_a_lab_is_found_by_either_id_on_its_worker_only(db: Database) -> None:
    one = await add_worker(db, "host-1", name="one")
    other = await add_worker(db, "host-2", name="other")
    async with db.session() as session:
        row = service_row(one.id, "OSPF")
        session.add(row)
    async with db.session(write=False) as session:
        assert (await service.get(session, one.id, row.id)).title == "OSPF"
        assert (await service.get(session, one.id, "cml-OSPF")).id == row.id
        with pytest.raises(service.LabNotFound) as info:
            await service.get(session, other.id, row.id)
    assert info.value.status_code == 404
    assert info.value.message == f"No lab '{row.id}' on worker '{other.id}'"


async def test_a_labs_state_history_keeps_the_last_twenty_changes(db: Database) -> None:
    worker = await add_worker(db, "host-1")
    async with db.session() as session:
        row = service_row(worker.id, "Flapping")
        session.add(row)
    states = ["STARTED", "STOPPED"] * 13
    async with db.session() as session:
        lab = await service.get(session, worker.id, row.id)
        changed = [await service.set_state(session, lab, state, reason=f"change {n}") for n, state in enumerate(states)]
        unchanged = await service.set_state(session, lab, "STOPPED", reason="again")
    assert all(changed) and not unchanged
    history = (await records(db, worker.id))["Flapping"].history["states"]
    assert len(history) == 20
    assert [h["reason"] for h in history] == [f"change {n}" for n in range(6, 26)]
    assert [e for e in await lab_events(db) if e[0] == "lab.state.changed"] == [("lab.state.changed", "Flapping")] * 26
