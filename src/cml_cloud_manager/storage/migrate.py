"""Schema migrations. `cml-cloud-manager migrate` upgrades; other commands migrate only an empty database and
refuse to start on an outdated one, so a rolling deploy never migrates from several replicas at once."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

from ..errors import AppError
from .db import Database

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same in every process that migrates.
_PG_MIGRATION_LOCK = 0x434D4C01


class SchemaOutdated(AppError):
    code = "schema_outdated"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _upgrade(conn: Connection, *, only_if_empty: bool) -> str:
    current = _current(conn)
    head = head_revision()
    if current == head:
        return "up to date"
    if only_if_empty and (current is not None or inspect(conn).get_table_names()):
        raise SchemaOutdated(
            f"The database schema is at revision {current}, this version needs {head}: "
            "run `cml-cloud-manager migrate` first."
        )
    config = alembic_config()
    config.attributes["connection"] = conn
    command.upgrade(config, "head")
    return f"migrated {current or 'empty database'} -> {head}"


async def migrate(db: Database, *, only_if_empty: bool = False) -> str:
    """Upgrade to head under a lock, so concurrent starters migrate once and the others then see head."""
    async with db.write_engine.begin() as conn:
        if not db.is_sqlite:  # SQLite's BEGIN IMMEDIATE already serialises us
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        outcome = await conn.run_sync(lambda sync: _upgrade(sync, only_if_empty=only_if_empty))
    log.info("database schema: %s", outcome)
    return outcome
