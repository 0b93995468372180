"""secrets at rest: command secrets, sessions tied to their API token, login states tied to a browser

- `command_secrets`: license tokens leave the command payload. Queued or running registrations keep their token
  there; every `license.register` payload loses its `token`.
- `sessions.token_sha256`: which API token opened a session, so revoking it ends the session. Every session is
  deleted (browsers sign in again once): a token session of before cannot be tied to its token, and OIDC sessions
  held the provider's tokens in clear, which are stored encrypted from now on (the migration has no key).
- `login_states.browser_sha256`: logins in progress are dropped (they last ten minutes; the user starts again).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_commands = sa.table(
    "commands",
    sa.column("id", sa.String),
    sa.column("type", sa.String),
    sa.column("status", sa.String),
    sa.column("payload", sa.JSON),
)
_secrets = sa.table("command_secrets", sa.column("command_id", sa.String), sa.column("value", sa.Text))


def upgrade() -> None:
    op.create_table(
        "command_secrets",
        sa.Column("command_id", sa.String(length=36), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["command_id"], ["commands.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("command_id"),
    )
    bind = op.get_bind()
    registrations = bind.execute(
        sa.select(_commands.c.id, _commands.c.status, _commands.c.payload).where(_commands.c.type == "license.register")
    ).all()
    for command_id, status, payload in registrations:
        if not isinstance(payload, dict) or "token" not in payload:
            continue
        token = payload.pop("token")
        if status in ("queued", "running") and token and token != "***":
            bind.execute(sa.insert(_secrets).values(command_id=command_id, value=token))
        bind.execute(sa.update(_commands).where(_commands.c.id == command_id).values(payload=payload))

    op.execute("DELETE FROM sessions")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("token_sha256", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_sessions_token_sha256"), ["token_sha256"], unique=False)

    op.execute("DELETE FROM login_states")
    # SQLite cannot add a NOT NULL column without a default in place: rebuild the (now empty) table.
    with op.batch_alter_table("login_states", schema=None, recreate="always") as batch_op:
        batch_op.add_column(sa.Column("browser_sha256", sa.String(length=64), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("login_states", schema=None) as batch_op:
        batch_op.drop_column("browser_sha256")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sessions_token_sha256"))
        batch_op.drop_column("token_sha256")
    op.drop_table("command_secrets")
