"""SQLite files hold sessions, commands and settings: only the owner may read them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.migrate import migrate
from cml_cloud_manager.system import service as system

from ..conftest import make_settings


async def test_sqlite_database_and_its_wal_files_are_created_0600(tmp_path: Path) -> None:
    path = tmp_path / "var" / "cml-cloud-manager.db"
    previous = os.umask(0o022)  # the usual umask, under which SQLite creates 0644 files
    try:
        db = Database(make_settings(f"sqlite+aiosqlite:///{path}"))
        try:
            await migrate(db)
            async with db.session() as session:
                await system.update(session, {"jobs.housekeeping.enabled": False}, actor="test")
            files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
            modes = {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files}
        finally:
            await db.dispose()
    finally:
        os.umask(previous)
    assert modes == {f.name: "0o600" for f in files}
