"""The API's health endpoints: what the public may see, what needs `viewer`, and probes that answer within
their deadline whatever Redis does (the same with real processes: tests/e2e/test_hung_redis.py)."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import httpx

from cml_cloud_manager.apps.api import create_app
from cml_cloud_manager.apps.worker import WorkerRuntime, health_app
from cml_cloud_manager.auth import tokens
from cml_cloud_manager.auth.roles import Role
from cml_cloud_manager.config import ProcessRole
from cml_cloud_manager.jobs.integrations import build_integrations
from cml_cloud_manager.jobs.processes import Work, beat
from cml_cloud_manager.storage.db import Database

from ..conftest import make_settings, serve_api
from ..e2e.faults import SilentListener

# No database and no Redis answer here: a probe that asked either would fail or hang.
NOWHERE = "postgresql+asyncpg://nobody@127.0.0.1:9/nothing"


async def test_liveness_asks_neither_the_database_nor_redis() -> None:
    settings = make_settings(NOWHERE, redis_url="redis://127.0.0.1:9/0")
    # Without its lifespan the app has opened nothing: no engine, no Redis client, no checks.
    app = create_app(ProcessRole.API, settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://127.0.0.1") as client:
        live = await asyncio.wait_for(client.get("/api/health/live"), 2)
    assert live.status_code == 200 and live.json() == {"status": "ok"}

    worker = WorkerRuntime(Database(settings), settings, build_integrations(settings), ProcessRole.WORKER)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(health_app(worker)), base_url="http://w") as client:
        assert (await client.get("/health/live")).status_code == 200
        assert (await client.get("/health/ready")).json() == {"status": "ok", "reasons": {}}
        # No heartbeat reached the database for a lease period (its leases have lapsed): not ready, still live.
        worker._beat_at = time.monotonic() - settings.lease_seconds - 1
        ready = await client.get("/health/ready")
        assert ready.status_code == 503 and "database" in ready.json()["reasons"]
        assert (await client.get("/health/live")).status_code == 200
        worker.stop_event.set()
        assert (await client.get("/health/ready")).json()["status"] == "stopping"
        assert (await client.get("/health/live")).status_code == 200


async def test_public_health_names_no_process_viewer_sees_them(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, auth_mode="token", auth_admin_token_file=tmp_path / "admin-token")
    db = Database(settings)
    async with serve_api(settings) as api:
        viewer = await tokens.create(db, name="test-viewer", role=Role.VIEWER)
        async with db.session() as session:
            now = await db.now(session)
            await beat(
                session,
                process_id=f"worker@{socket.gethostname()}:4242:abcdef",
                role="worker",
                hostname=socket.gethostname(),
                pid=4242,
                now=now,
                jobs=Work(),
            )
        public = await api.get("/api/health")
        assert public.status_code == 200 and public.json()["status"] == "ok", public.json()
        components = public.json()["components"]
        assert components["database"] == "up" and components["redis"] == "disabled"
        assert components["worker"] == {
            "alive": True,
            "replicas": 1,
            "last_heartbeat": components["worker"]["last_heartbeat"],
        }
        assert "api_replicas" not in components
        assert socket.gethostname() not in public.text and "4242" not in public.text

        assert (await api.get("/api/health/details")).status_code == 401
        details = await api.get("/api/health/details", headers={"Authorization": f"Bearer {viewer}"})
        assert details.status_code == 200
        (process,) = details.json()["components"]["worker"]["processes"]
        assert process["id"] == f"worker@{socket.gethostname()}:4242:abcdef"
        (replica,) = details.json()["components"]["api_replicas"]
        assert replica["id"].startswith(f"api@{socket.gethostname()}:")

        for probe in ("/api/health/live", "/api/health/ready"):
            answer = await api.get(probe)
            assert answer.status_code == 200 and answer.json()["status"] == "ok", (probe, answer.json())
    await db.dispose()


async def test_probes_of_a_hung_redis_answer_in_time_and_share_one_check(database_url: str) -> None:
    silent = SilentListener()
    try:
        settings = make_settings(database_url, redis_url=silent.url, health_timeout_seconds=0.3)
        async with serve_api(settings) as api:
            began = time.monotonic()
            answers = await asyncio.gather(*(api.get("/api/health") for _ in range(20)), api.get("/api/health/ready"))
            took = time.monotonic() - began
        for answer in answers:
            body = answer.json()
            assert answer.status_code == 200 and body["status"] == "degraded", body
            assert body["components"] == body["components"] | {"database": "up", "redis": "down"}
            assert body["reasons"]["redis"] == "no answer within 0.3 s"
        assert took < 2, f"21 probes took {took:.2f}s"
        # The relay's subscription and one shared ping: not a connection per probe.
        assert silent.accepted <= 3, silent.accepted
    finally:
        silent.close()
