"""Engines and the one transaction scope every request, job and command goes through."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from ..config import Settings
from .jsoncodec import dumps, loads
from .models import EventRow

log = logging.getLogger(__name__)

EVENTS_WRITTEN = "events_written"
# The sequence number of the last event a committed transaction wrote (its `info`, as `on_commit` gets it).
LAST_SEQUENCE = "last_sequence"
SOURCE = "event_source"
# Events appended in this transaction (`events.outbox.append`), inserted just before it commits.
PENDING_EVENTS = "pending_events"

# The outbox's lock on PostgreSQL. Writers of events take it so that sequence numbers commit in order: the relay
# reads "everything after the last seq I saw" and must never skip a lower number that commits late.
#
# Lock order (issue 16): every writing transaction takes its row locks first and this lock last, just before
# COMMIT, and while holding it only inserts events (a table no other lock guards) and commits. A transaction that
# waits for it therefore waits for one that never waits for anything: no lock cycle can pass through it. Before,
# the lock was taken with a transaction's first event and held across later row updates, so an operator's write
# (row, then lock) and worker-metrics (lock, then rows) deadlocked.
OUTBOX_LOCK = 0x434D4C02


def _sqlite_engine(url: str, begin: str) -> AsyncEngine:
    engine = create_async_engine(url, connect_args={"timeout": 30}, json_serializer=dumps, json_deserializer=loads)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy own BEGIN (pysqlite would otherwise defer it) and share the file across processes.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Deleted rows are overwritten with zeros, so a scrubbed secret (a license token) leaves no copy behind.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine


# A connection back from the pool within this many seconds is assumed alive (see `_postgres_engine`).
TRUSTED_IDLE_SECONDS = 2.0


def _postgres_engine(url: str, pool_size: int, timeout: float | None) -> AsyncEngine:
    """Pings a pooled connection before use only if it sat idle: SQLAlchemy's `pool_pre_ping` costs three
    round trips (BEGIN, ping, ROLLBACK) on every checkout, more than the query a request makes. A connection
    that fails anyway (the database restarted within the last seconds) fails that one request with 503 and
    SQLAlchemy then replaces every pooled connection.

    `timeout` bounds connecting and each statement (asyncpg's own timeouts): a database that accepted the
    connection and then stopped answering (a network blackhole, a hung server) fails the statement with a
    TimeoutError (503) instead of holding the request; a refused connection fails at once anyway."""
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=10,
        json_serializer=dumps,
        json_deserializer=loads,
        # Unbounded (None): statements take what they take; connecting keeps asyncpg's own 60 s limit.
        connect_args={"timeout": timeout or 60, "command_timeout": timeout},
    )

    @event.listens_for(engine.sync_engine, "connect")
    @event.listens_for(engine.sync_engine, "checkin")
    def _note_use(_dbapi_connection: Any, record: Any) -> None:
        record.info["used_at"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("used_at", 0.0) <= TRUSTED_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the pool discards this connection and checks out another
            raise DisconnectionError(f"pooled connection is dead: {exc}") from exc

    return engine


class Database:
    """Owns the engines. Writers on SQLite take the write lock up front (BEGIN IMMEDIATE) so two processes
    never deadlock upgrading a read lock; readers stay concurrent under WAL."""

    def __init__(self, settings: Settings, *, source: str = "cml-cloud-manager", unbounded: bool = False) -> None:
        """`unbounded`: statements may take as long as they need, beyond DATABASE_TIMEOUT_SECONDS (`migrate`
        rewriting a large table)."""
        self.source = source
        self.url = settings.database_url
        self.is_sqlite = settings.is_sqlite
        if self.is_sqlite:
            database = make_url(self.url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
                # Private from the start, like the admin token: SQLite would create it 0644 under the usual umask,
                # and it gives the -wal and -shm files the database file's mode.
                Path(database).touch(mode=0o600, exist_ok=True)
            self.write_engine = _sqlite_engine(self.url, "BEGIN IMMEDIATE")
            self.read_engine = _sqlite_engine(self.url, "BEGIN")
        else:
            timeout = None if unbounded else settings.database_timeout_seconds
            self.write_engine = _postgres_engine(self.url, settings.database_pool_size, timeout)
            # Reads skip BEGIN/COMMIT: one round trip per query instead of three. A read of several statements
            # (a page and its total) may see two snapshots; nothing relies on more.
            self.read_engine = self.write_engine.execution_options(isolation_level="AUTOCOMMIT")
        self._writer = async_sessionmaker(self.write_engine, expire_on_commit=False)
        self._reader = async_sessionmaker(self.read_engine, expire_on_commit=False)
        # Called after a commit that wrote events, with the session's `info` (see `apps.runtime`).
        self.on_commit: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        # A job's fan-out over many hosts (labs-refresh, idle-detection: up to METRICS_CONCURRENCY at once) may
        # hold at most half the pool: hosts that answer together once took every connection, and under load the
        # command runner's and the scheduler's claims waited out the pool timeout and failed.
        self._fan_out_slots = asyncio.Semaphore(max(1, settings.database_pool_size // 2))

    @asynccontextmanager
    async def session(self, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        """One transaction: commits when the block succeeds, rolls back when it raises. Services never commit."""
        factory = self._writer if write else self._reader
        async with factory() as session, session.begin():
            session.info[SOURCE] = self.source
            if write:
                session.info[PENDING_EVENTS] = []
            yield session
            events = await self._write_events(session)
        if events:
            session.info[LAST_SEQUENCE] = max(event.seq for event in events)  # assigned by the COMMIT's inserts
        if session.info.get(EVENTS_WRITTEN) and self.on_commit is not None:
            await self.on_commit(session.info)

    @asynccontextmanager
    async def fan_out_session(self) -> AsyncIterator[AsyncSession]:
        """A write transaction for one host of a fan-out: waits its turn for one of the fan-out's slots."""
        async with self._fan_out_slots, self.session() as session:
            yield session

    async def _write_events(self, session: AsyncSession) -> list[EventRow]:
        """The transaction's events, last (see `OUTBOX_LOCK`): its row changes are flushed, and their row locks
        taken, before the outbox lock; the COMMIT that follows inserts the events and releases every lock."""
        events: list[EventRow] = session.info.pop(PENDING_EVENTS, None) or []
        if not events:
            return events
        await session.flush()
        if not self.is_sqlite:  # SQLite's BEGIN IMMEDIATE already made this the only writer
            await session.execute(select(func.pg_advisory_xact_lock(OUTBOX_LOCK)))
        session.add_all(events)
        return events

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncSession]:
        """A read-only transaction whose statements all see one snapshot: what a process loads its in-memory
        state from, together with the outbox position that state is current to. On PostgreSQL, REPEATABLE READ
        (the usual reads run in autocommit, one snapshot per statement); SQLite's WAL read transaction is one
        snapshot already."""
        engine = (
            self.read_engine
            if self.is_sqlite
            else self.write_engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        )
        async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
            session.info[SOURCE] = self.source
            yield session

    async def now(self, session: AsyncSession) -> datetime:
        """The database's clock, so leases and heartbeats agree across machines."""
        if self.is_sqlite:
            return datetime.now(UTC)
        value = (await session.execute(text("SELECT clock_timestamp()"))).scalar_one()
        assert isinstance(value, datetime)
        return value.astimezone(UTC)

    async def ping(self) -> bool:
        try:
            async with self.read_engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception as exc:  # any failure means "down" to a health probe
            log.warning("database ping failed: %s", exc)
            return False

    async def dispose(self) -> None:
        await self.write_engine.dispose()
        if self.is_sqlite:  # on PostgreSQL the read engine shares the write engine's pool
            await self.read_engine.dispose()
