"""The API's busiest reads on PostgreSQL: prebuilt statements run on asyncpg's own small pool.

SQLAlchemy's async execution path (pool checkout with its events, the greenlet hand-off, result wrapping)
costs ~280 µs of CPU per statement here against ~40 µs for asyncpg's cached prepared statement: a third of
the CPU of `GET /api/workers/{id}`, the request the benchmark load is made of. The statements are still
built with SQLAlchemy, compiled once to the asyncpg dialect's `$n` placeholders, and rows come back with the
types SQLAlchemy would give them (JSON decoded by the same function, timestamps as aware datetimes)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
from sqlalchemy import Select
from sqlalchemy.engine import Dialect, make_url

from .jsoncodec import dumps, loads

# URL options that SQLAlchemy's asyncpg adapter consumes itself; `asyncpg.connect` does not take them.
_SQLALCHEMY_ONLY = ("prepared_statement_cache_size", "prepared_statement_name_func", "async_fallback")

# What a lost or refused connection raises; anything else (a bad statement) is a bug, not an outage.
UNAVAILABLE = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # the server is shutting down or starting
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections
)


class DatabaseUnavailable(ConnectionError):
    """The database could not answer a read (the API answers 503, as for any connection error)."""


class HotReads:
    """Opens its pool on first use and keeps at most `pool_size` connections; `close()` ends them."""

    def __init__(self, url: str, dialect: Dialect, pool_size: int, timeout: float | None) -> None:
        # The engine's own translation of DATABASE_URL, so both pools connect alike (host, ssl, sockets...).
        _, connect_kwargs = dialect.create_connect_args(make_url(url))
        self.connect_kwargs: dict[str, Any] = {
            # Connecting and each statement, as the SQLAlchemy engine's `connect_args` (DATABASE_TIMEOUT_SECONDS).
            "timeout": timeout or 60,
            "command_timeout": timeout,
            "server_settings": {"application_name": "cml-cloud-manager/hot-reads"},
        }
        self.connect_kwargs.update((key, value) for key, value in connect_kwargs.items() if key not in _SQLALCHEMY_ONLY)
        self.dialect = dialect
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        # Keyed by statement object: callers pass module-level statements, so this stays small.
        self._compiled: dict[Select[Any], tuple[str, list[str]]] = {}

    async def rows(self, statement: Select[Any], params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        compiled = self._compiled.get(statement)
        if compiled is None:
            done = statement.compile(dialect=self.dialect)
            compiled = self._compiled[statement] = (done.string, list(done.positiontup or []))
        sql, names = compiled
        try:
            pool = self._pool or await self._open()
            rows: list[asyncpg.Record] = await pool.fetch(sql, *[params[name] for name in names])
        except UNAVAILABLE as exc:
            raise DatabaseUnavailable(f"database read failed: {exc}") from exc
        return rows

    async def _open(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    min_size=0,
                    max_size=self.pool_size,
                    max_inactive_connection_lifetime=60,
                    init=_json_codecs,
                    **self.connect_kwargs,
                )
            return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def _json_codecs(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=dumps, decoder=loads, schema="pg_catalog")
