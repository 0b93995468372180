import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text

from cml_cloud_manager.config import Settings
from cml_cloud_manager.storage.db import Database
from cml_cloud_manager.storage.migrate import SchemaOutdated, head_revision, migrate
from cml_cloud_manager.storage.models import Base


async def test_empty_database_is_migrated_then_left_alone(settings: Settings) -> None:
    db = Database(settings)
    try:
        assert "migrated empty database" in await migrate(db, only_if_empty=True)
        assert await migrate(db, only_if_empty=True) == "up to date"
        async with db.session(write=False) as session:
            version = (await session.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        assert version == head_revision()
    finally:
        await db.dispose()


async def test_outdated_schema_refuses_to_start(settings: Settings) -> None:
    db = Database(settings)
    try:
        await migrate(db)
        async with db.session() as session:
            await session.execute(text("UPDATE alembic_version SET version_num = '0000'"))
        with pytest.raises(SchemaOutdated, match="run `cml-cloud-manager migrate`"):
            await migrate(db, only_if_empty=True)
    finally:
        await db.dispose()


async def test_migrations_build_the_schema_the_models_declare(db: Database) -> None:
    def differences(conn: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))

    async with db.write_engine.connect() as conn:
        assert await conn.run_sync(differences) == []
