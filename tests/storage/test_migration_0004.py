"""Migration 0004 on a database holding what earlier versions stored in clear: a queued license registration's
token moves to `command_secrets`, every license payload loses its token, and every session is deleted (OIDC ones
held provider tokens in clear; token ones cannot be tied to their token)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from alembic import command
from sqlalchemy import Connection, text

from cml_cloud_manager.config import Settings
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.migrate import alembic_config, migrate


def _upgrade_to(conn: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = conn
    command.upgrade(config, revision)


async def _rows(db: Database, sql: str) -> list[Any]:
    async with db.write_engine.connect() as conn:
        return list((await conn.execute(text(sql))).all())


async def test_clear_secrets_of_earlier_versions_are_moved_or_dropped(settings: Settings) -> None:
    db = Database(settings)
    try:
        async with db.write_engine.begin() as conn:
            await conn.run_sync(lambda sync: _upgrade_to(sync, "0003"))
        now = datetime(2026, 12, 1, 10, tzinfo=UTC)
        async with db.write_engine.begin() as conn:
            for command_id, status, payload in (
                ("c-queued", "queued", '{"worker_id": "w", "token": "clear-token-1", "reregister": false}'),
                ("c-failed", "failed", '{"worker_id": "w", "token": "clear-token-2", "reregister": false}'),
                ("c-done", "succeeded", '{"token": "***"}'),
            ):
                await conn.execute(
                    text(
                        "INSERT INTO commands (id, type, payload, status, progress, error, requested_by, attempts,"
                        " created_at) VALUES (:id, 'license.register', :payload, :status, '', '', '', 0, :now)"
                    ),
                    {"id": command_id, "payload": payload, "status": status, "now": now},
                )
            for session_id, refresh in (("oidc-session", "clear-refresh"), ("token-session", None)):
                await conn.execute(
                    text(
                        "INSERT INTO sessions (id_sha256, subject, roles, csrf_token, refresh_token, id_token,"
                        " created_at, expires_at) VALUES (:id, 'alice', '{}', 'x', :refresh, :refresh, :now, :now)"
                    ),
                    {"id": session_id, "refresh": refresh, "now": now},
                )
            await conn.execute(
                text(
                    "INSERT INTO login_states (state, nonce, code_verifier, return_to, created_at)"
                    " VALUES ('s', 'n', 'v', '/', :now)"
                ),
                {"now": now},
            )
        assert "migrated 0003 -> " in await migrate(db)  # to head, through 0004

        assert await _rows(db, "SELECT command_id, value FROM command_secrets") == [("c-queued", "clear-token-1")]
        payloads = await _rows(db, "SELECT payload FROM commands")
        assert len(payloads) == 3 and not [p for (p,) in payloads if "token" in str(p)]
        assert await _rows(db, "SELECT id_sha256 FROM sessions") == []
        assert await _rows(db, "SELECT state FROM login_states") == []
    finally:
        await db.dispose()
