"""Alembic environment. Runs inside a connection handed over by `storage.migrate` (see there)."""

from alembic import context

from cml_cloud_manager.storage.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
