"""`/api/system` over HTTP: the scheduled jobs as settings and overrides make them, their runs, "run now" as a
command, the UI's public settings, and runtime overrides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import func, select

from cml_cloud_manager.apps import registry
from cml_cloud_manager.config import Settings
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import CommandRow, JobRunRow, SystemSettingRow

JOB_NAMES = sorted(job.name for job in registry.jobs())


async def count(db: Database, model: type) -> int:
    async with db.session(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def add_runs(db: Database, job: str, outcomes: list[str]) -> list[int]:
    start = datetime.now(UTC) - timedelta(hours=1)
    ids = []
    async with db.session() as session:
        for n, outcome in enumerate(outcomes):
            at = start + timedelta(minutes=n)
            run = JobRunRow(
                job_name=job,
                scheduled_at=at,
                claimed_by="worker@test",
                outcome=outcome,
                summary={"n": n},
                lease_expires_at=at,
                started_at=at,
                finished_at=None if outcome == "running" else at + timedelta(seconds=2.5),
            )
            session.add(run)
            await session.flush()
            ids.append(run.id)
    return ids


async def test_jobs_are_listed_as_settings_and_overrides_make_them(
    api: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    await add_runs(db, "housekeeping", ["failed", "succeeded"])
    jobs = {job["name"]: job for job in (await api.get("/api/system/jobs")).json()["items"]}
    assert sorted(jobs) == JOB_NAMES
    housekeeping = jobs["housekeeping"]
    assert (housekeeping["enabled"], housekeeping["interval_seconds"]) == (True, settings.housekeeping_interval)
    assert datetime.fromisoformat(housekeeping["next_run"]) > datetime.now(UTC)
    last = housekeeping["last_run"]
    assert (last["outcome"], last["duration_seconds"], last["summary"]) == ("succeeded", 2.5, {"n": 1})
    assert jobs["labs-refresh"]["last_run"] is None
    assert (jobs["auto-import"]["enabled"], jobs["auto-import"]["next_run"]) == (False, None)  # off by default

    changed = await api.put(
        "/api/system/settings",
        json={"values": {"jobs.housekeeping.enabled": False, "jobs.auto-import.interval_seconds": 45}},
    )
    assert changed.status_code == 200, changed.text
    jobs = {job["name"]: job for job in (await api.get("/api/system/jobs")).json()["items"]}
    assert (jobs["housekeeping"]["enabled"], jobs["housekeeping"]["next_run"]) == (False, None)
    assert jobs["auto-import"]["interval_seconds"] == 45.0


async def test_a_jobs_runs_are_paged_newest_first(api: httpx.AsyncClient, db: Database) -> None:
    ids = await add_runs(db, "idle-detection", ["succeeded", "failed", "running"])
    await add_runs(db, "housekeeping", ["succeeded"])

    page = (await api.get("/api/system/jobs/idle-detection/runs", params={"limit": 2})).json()
    assert [run["id"] for run in page["items"]] == [ids[2], ids[1]] and page["total"] == 3
    assert (page["items"][0]["outcome"], page["items"][0]["duration_seconds"]) == ("running", None)
    rest = (await api.get("/api/system/jobs/idle-detection/runs", params={"offset": 2})).json()
    assert [run["id"] for run in rest["items"]] == [ids[0]]

    missing = await api.get("/api/system/jobs/nope/runs")
    assert missing.status_code == 404
    assert missing.json()["detail"] == f"No job named 'nope' (jobs: {', '.join(JOB_NAMES)})"


async def test_run_now_queues_a_command_for_a_worker(api: httpx.AsyncClient, db: Database) -> None:
    response = await api.post("/api/system/jobs/housekeeping/run")
    assert response.status_code == 202, response.text
    assert response.json()["worker_alive"] is False  # no worker process in this test: the answer says so
    command = (await api.get(response.headers["location"])).json()
    assert (command["type"], command["status"]) == ("system.run-job", "queued")
    async with db.session(write=False) as session:
        row = await session.get(CommandRow, command["id"])
    assert row is not None and row.payload == {"job": "housekeeping"}

    missing = await api.post("/api/system/jobs/nope/run")
    assert missing.status_code == 404 and "housekeeping" in missing.json()["detail"]
    assert await count(db, CommandRow) == 1


async def test_the_public_config_is_what_the_ui_needs_and_no_secret(api: httpx.AsyncClient, settings: Settings) -> None:
    config = (await api.get("/api/system/config")).json()
    assert config == {
        "idle_timeout_minutes": settings.idle_timeout_minutes,
        "idle_snooze_minutes": settings.idle_snooze_minutes,
        "aws_regions": settings.aws_regions,
        "cml_instance_type": settings.cml_instance_type,
        "auth_mode": "none",
    }


async def test_unknown_setting_and_bad_value_are_named(api: httpx.AsyncClient, db: Database) -> None:
    response = await api.put("/api/system/settings", json={"values": {"jobs.nope.enabled": True}})
    assert response.status_code == 400 and "Unknown system setting 'jobs.nope.enabled'" in response.json()["detail"]
    response = await api.put("/api/system/settings", json={"values": {"jobs.housekeeping.interval_seconds": "soon"}})
    assert response.status_code == 400 and "jobs.housekeeping.interval_seconds" in response.json()["detail"]
    # One bad key refuses the whole change.
    response = await api.put(
        "/api/system/settings",
        json={"values": {"jobs.housekeeping.enabled": False, "jobs.housekeeping.interval_seconds": 0}},
    )
    assert response.status_code == 400
    assert await count(db, SystemSettingRow) == 0


async def test_settings_round_trip(api: httpx.AsyncClient) -> None:
    response = await api.put("/api/system/settings", json={"values": {"jobs.housekeeping.interval_seconds": 30}})
    assert response.status_code == 200
    assert response.json() == {"jobs.housekeeping.interval_seconds": 30.0}
    assert (await api.get("/api/system/settings")).json() == {"jobs.housekeeping.interval_seconds": 30.0}
    jobs = {job["name"]: job for job in (await api.get("/api/system/jobs")).json()["items"]}
    assert jobs["housekeeping"]["interval_seconds"] == 30.0
    removed = await api.put("/api/system/settings", json={"values": {"jobs.housekeeping.interval_seconds": None}})
    assert removed.json() == {} and (await api.get("/api/system/settings")).json() == {}
