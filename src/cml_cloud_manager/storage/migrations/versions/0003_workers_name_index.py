"""workers listed in name order from an index

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 03:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_workers_name_id", "workers", ["name", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_workers_name_id", table_name="workers")
