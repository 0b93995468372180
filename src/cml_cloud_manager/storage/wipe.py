"""Leaving no copy of a deleted secret in SQLite's files.

`PRAGMA secure_delete` (set on every connection, see `db.py`) zeroes a deleted row in its page, but in WAL mode
the pages written before the delete stay in the `-wal` file until a checkpoint copies the newest pages into the
database and the log is truncated. PostgreSQL keeps dead rows until VACUUM; that is out of our hands here.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3

from sqlalchemy.engine import make_url

from .db import Database

log = logging.getLogger(__name__)
CHECKPOINT_TIMEOUT_SECONDS = 10


def _checkpoint(path: str) -> None:
    conn = sqlite3.connect(path, timeout=CHECKPOINT_TIMEOUT_SECONDS, isolation_level=None)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.close()
    if busy:
        log.warning("could not truncate the SQLite log after deleting a secret: readers kept it busy")


async def truncate_log(db: Database) -> None:
    """After deleting a secret: fold the log into the database and empty it (SQLite only; best effort)."""
    if not db.is_sqlite:
        return
    path = make_url(db.url).database
    if not path or path == ":memory:":
        return
    try:
        await asyncio.to_thread(_checkpoint, path)
    except sqlite3.Error as exc:
        log.warning("could not truncate the SQLite log after deleting a secret: %s", exc)
