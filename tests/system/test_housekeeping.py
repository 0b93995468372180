"""Housekeeping keeps the outbox, run history and metric history bounded, and keeps everything still in use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from cml_cloud_manager.config import Settings
from cml_cloud_manager.events import outbox
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import (
    CommandRow,
    EventRow,
    JobRunRow,
    LoginStateRow,
    MetricSampleRow,
    ProcessRow,
    SessionRow,
)
from cml_cloud_manager.system.tasks import housekeeping

from ..conftest import make_settings
from ..events.probe import Probe
from ..simulated import add_worker, job_context

NOW = datetime.now(UTC)


async def test_what_is_past_its_retention_goes_and_the_rest_stays(db: Database, database_url: str) -> None:
    settings: Settings = make_settings(database_url, history_days=7, events_retention_seconds=3600)
    old, recent = NOW - timedelta(days=8), NOW - timedelta(days=6)
    worker = await add_worker(db, "i-housekeeping")
    async with db.session() as session:
        for label, finished in (("old", old), ("recent", recent), ("running", None)):
            session.add(CommandRow(type=f"test.{label}", created_at=old, finished_at=finished, status="succeeded"))
            session.add(
                JobRunRow(
                    job_name=label,
                    scheduled_at=old,
                    claimed_by="p",
                    lease_expires_at=old,
                    started_at=old,
                    finished_at=finished,
                )
            )
        session.add_all(MetricSampleRow(worker_id=worker.id, ts=ts) for ts in (old, recent))
        for name, beat in (("gone", old), ("quiet", recent)):
            session.add(ProcessRow(id=name, role="worker", hostname="h", pid=1, started_at=old, last_heartbeat=beat))
        for name, expires in (("expired", NOW - timedelta(seconds=1)), ("live", NOW + timedelta(hours=1))):
            session.add(SessionRow(id_sha256=name, subject=name, csrf_token="c", created_at=old, expires_at=expires))
        for name, started in (("abandoned", NOW - timedelta(minutes=61)), ("in-progress", NOW - timedelta(minutes=5))):
            session.add(LoginStateRow(state=name, browser_sha256="b", nonce="n", code_verifier="v", created_at=started))
    async with db.session() as session:
        await outbox.append(session, Probe(), type="test.recent")
    async with db.session() as session:  # older than the retention, though written now
        for event in (await session.scalars(select(EventRow))).all():
            event.time = NOW - timedelta(hours=2) if event.type != "test.recent" else NOW

    async with job_context(db, settings) as ctx:
        summary = await housekeeping(ctx)

    assert summary.model_dump() == {
        "events_pruned": 1,  # worker.created; test.recent is within the retention
        "job_runs_pruned": 1,
        "commands_pruned": 1,
        "metric_samples_pruned": 1,
        "processes_pruned": 1,
        "sessions_pruned": 1,
    }
    async with db.session(write=False) as session:
        assert sorted((await session.scalars(select(CommandRow.type))).all()) == ["test.recent", "test.running"]
        assert sorted((await session.scalars(select(JobRunRow.job_name))).all()) == ["recent", "running"]
        assert (await session.scalars(select(MetricSampleRow.ts))).all() == [recent]
        assert (await session.scalars(select(ProcessRow.id))).all() == ["quiet"]
        assert (await session.scalars(select(SessionRow.id_sha256))).all() == ["live"]
        assert (await session.scalars(select(LoginStateRow.state))).all() == ["in-progress"]
        assert (await session.scalars(select(EventRow.type))).all() == ["test.recent"]


async def test_the_newest_event_stays_however_old(db: Database, database_url: str) -> None:
    """A client reconnecting with a Last-Event-ID must tell "pruned" from "never existed"."""
    settings = make_settings(database_url, events_retention_seconds=60)
    async with db.session() as session:
        for n in range(3):
            await outbox.append(session, Probe(i=n), type="test.event")
    async with db.session() as session:
        for event in (await session.scalars(select(EventRow))).all():
            event.time = NOW - timedelta(days=30)

    async with job_context(db, settings) as ctx:
        assert (await housekeeping(ctx)).events_pruned == 2
        assert (await housekeeping(ctx)).events_pruned == 0

    async with db.session(write=False) as session:
        assert [e.data["i"] for e in (await session.scalars(select(EventRow))).all()] == [2]
