"""exclusions: instances removed from the fleet, which auto-import leaves alone until the exclusion is lifted

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "exclusions",
        sa.Column("aws_instance_id", sa.String(length=32), nullable=False),
        sa.Column("aws_region", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("excluded_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("aws_instance_id"),
    )


def downgrade() -> None:
    op.drop_table("exclusions")
