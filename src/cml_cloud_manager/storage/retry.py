"""Running a unit of work again when its transaction lost to a concurrent one.

The lock order (see `db.OUTBOX_LOCK`) leaves no cycle through the outbox lock, but row locks can still meet in
opposite orders (two transactions updating the same workers in different orders), and PostgreSQL then aborts
one of them with a deadlock; a serializable transaction can fail to serialize. The database is up and the work
is valid: doing it again, whole, a moment later succeeds. Such an error is never "database unavailable".
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import sqlite3
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from prometheus_client import Counter

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# PostgreSQL's SQLSTATEs for "this transaction lost a conflict; run it again".
_SQLSTATES = {"40001": "serialization_failure", "40P01": "deadlock"}
SQLITE_LOCKED = "sqlite_locked"
ATTEMPTS = 5
# SQLite answers "database is locked" only after waiting out its busy timeout (30 s, see `db.py`): one more try.
SQLITE_LOCKED_ATTEMPTS = 2
BACKOFF_SECONDS = 0.05

CONTENTION = Counter(
    "database_contention_total",
    "Transactions that lost a lock conflict (deadlock, serialization failure, SQLite busy), by what was done",
    ["reason", "outcome"],
)


def contention(exc: BaseException) -> str | None:
    """Why `exc` ended a transaction that is worth running again, or None for any other error (a refused
    connection, a constraint violation...)."""
    for error in (exc, getattr(exc, "orig", None), exc.__cause__):
        if error is None:
            continue
        reason = _SQLSTATES.get(str(getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)))
        if reason is not None:
            return reason
        if isinstance(error, sqlite3.OperationalError) and (
            (getattr(error, "sqlite_errorcode", 0) & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            or "database is locked" in str(error)
        ):
            return SQLITE_LOCKED
    return None


def retry_on_contention(func: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Call `func` again, whole, when it fails with `contention(...)`: up to `ATTEMPTS` times, after a short
    random pause that grows with each attempt, so the transactions that collided do not collide again.

    `func` is one unit of work: one transaction (or several, each safe to do twice), and nothing before the
    failing one that must not be done again. Any other error, and the last contention error, propagate."""

    @functools.wraps(func)
    async def retrying(*args: P.args, **kwargs: P.kwargs) -> T:
        attempt = 1
        while True:
            try:
                return await func(*args, **kwargs)
            except Exception as exc:
                reason = contention(exc)
                if reason is None:
                    raise
                limit = SQLITE_LOCKED_ATTEMPTS if reason == SQLITE_LOCKED else ATTEMPTS
                if attempt >= limit:
                    CONTENTION.labels(reason, "gave_up").inc()
                    log.warning("%s: %s on attempt %d of %d; giving up", func.__qualname__, reason, attempt, limit)
                    raise
                CONTENTION.labels(reason, "retried").inc()
                log.info("%s: %s on attempt %d of %d; running it again", func.__qualname__, reason, attempt, limit)
            await asyncio.sleep(random.uniform(0, BACKOFF_SECONDS * 2 ** (attempt - 1)))
            attempt += 1

    return retrying
