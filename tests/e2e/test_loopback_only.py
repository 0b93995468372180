"""`AUTH_MODE=none` on a real `api` process: the issue's DNS-rebinding request is refused, the UI's own requests
are not (the rules themselves: tests/apps/test_http_hardening.py)."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select

from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.models import CommandRow

from .conftest import Start

pytestmark = pytest.mark.e2e


async def commands(db: Database) -> int:
    async with db.session(write=False) as session:
        return int((await session.execute(select(func.count()).select_from(CommandRow))).scalar_one())


async def test_a_rebound_cross_site_post_is_refused(start: Start, db_of: Database) -> None:
    api = await start("api")  # stack_env: AUTH_MODE=none on 127.0.0.1
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
        # what a page on rebind.evil.example sends once its name resolves to 127.0.0.1
        attack = await client.post(
            "/api/system/jobs/housekeeping/run",
            content=b"{}",
            headers={
                "Host": f"rebind.evil.example:{api.port}",
                "Origin": f"http://rebind.evil.example:{api.port}",
                "Content-Type": "text/plain",
            },
        )
        assert attack.status_code == 403 and "loopback" in attack.json()["detail"]
        # the same page posting to 127.0.0.1 directly: the right Host, but another origin
        cross_site = await client.post(
            "/api/system/jobs/housekeeping/run",
            headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},
        )
        assert cross_site.status_code == 403 and "cross-origin" in cross_site.json()["detail"]
        assert await commands(db_of) == 0, "nothing was queued"
        # the UI on its own origin
        own = await client.post(
            "/api/system/jobs/housekeeping/run", headers={"Origin": api.url, "Sec-Fetch-Site": "same-origin"}
        )
        assert own.status_code == 202, own.text
        assert await commands(db_of) == 1
