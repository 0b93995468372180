"""Tables. One module so Alembic sees the whole schema; the domain rules live in each slice's `domain.py`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a real bigint identity.
SeqType = BigInteger().with_variant(Integer(), "sqlite")


def new_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if dialect.name != "sqlite" else value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        # asyncpg already returns timestamptz as aware UTC datetimes: no per-value call on the busiest reads.
        if dialect.driver == "asyncpg":
            return None
        return super().result_processor(dialect, coltype)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class WorkerRow(Base):
    __tablename__ = "workers"
    # The list's order: a page walks the index instead of sorting every worker.
    __table_args__ = (Index("ix_workers_name_id", "name", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    aws_region: Mapped[str] = mapped_column(String(32), index=True)
    aws_instance_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    instance_type: Mapped[str] = mapped_column(String(64), default="")
    ami_id: Mapped[str] = mapped_column(String(64), default="")
    ami_name: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[str] = mapped_column(String(32), index=True, default="unknown")
    service_status: Mapped[str] = mapped_column(String(32), default="unavailable")
    service_reason: Mapped[str] = mapped_column(Text, default="")
    license_status: Mapped[str] = mapped_column(String(32), default="unregistered")
    public_ip: Mapped[str | None] = mapped_column(String(64))
    private_ip: Mapped[str | None] = mapped_column(String(64))
    cml_version: Mapped[str] = mapped_column(String(64), default="")
    cml_ready: Mapped[bool] = mapped_column(Boolean, default=False)
    cpu_percent: Mapped[float | None] = mapped_column(Float)
    memory_percent: Mapped[float | None] = mapped_column(Float)
    disk_percent: Mapped[float | None] = mapped_column(Float)
    labs_count: Mapped[int] = mapped_column(Integer, default=0)
    compute_hosts: Mapped[int] = mapped_column(Integer, default=0)
    status_checks: Mapped[str] = mapped_column(String(32), default="")
    detailed_monitoring: Mapped[bool] = mapped_column(Boolean, default=False)
    tags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    idle_detection_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    last_activity_at: Mapped[datetime | None]
    snoozed_until: Mapped[datetime | None]
    last_resumed_at: Mapped[datetime | None]
    auto_pauses: Mapped[int] = mapped_column(Integer, default=0)
    manual_pauses: Mapped[int] = mapped_column(Integer, default=0)
    launched_at: Mapped[datetime | None]
    metrics_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class LabRow(Base):
    __tablename__ = "labs"
    __table_args__ = (UniqueConstraint("worker_id", "cml_lab_id", name="uq_labs_worker_lab"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    worker_id: Mapped[str] = mapped_column(ForeignKey("workers.id", ondelete="CASCADE"), index=True)
    cml_lab_id: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(32), default="DEFINED_ON_CORE")
    owner: Mapped[str] = mapped_column(String(255), default="")
    node_count: Mapped[int] = mapped_column(Integer, default=0)
    link_count: Mapped[int] = mapped_column(Integer, default=0)
    history: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    cml_created_at: Mapped[datetime | None]
    cml_modified_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ExclusionRow(Base):
    """An instance removed from the fleet that auto-import and import by AMI must leave alone, until lifted."""

    __tablename__ = "exclusions"

    aws_instance_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    aws_region: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(255))
    excluded_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]


class SystemSettingRow(Base):
    __tablename__ = "system_settings"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime]


class CommandRow(Base):
    __tablename__ = "commands"
    __table_args__ = (Index("ix_commands_status_created", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    worker_id: Mapped[str | None] = mapped_column(String(36), index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str] = mapped_column(Text, default="")
    requested_by: Mapped[str] = mapped_column(String(255), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class CommandSecretRow(Base):
    """A secret a queued command needs (a license token), kept out of the command's payload, which stays for
    HISTORY_DAYS and is shown by `GET /api/commands/{id}`. Deleted when the command ends, whatever the outcome
    (see `jobs.commands`); deleting the command deletes it too."""

    __tablename__ = "command_secrets"

    command_id: Mapped[str] = mapped_column(ForeignKey("commands.id", ondelete="CASCADE"), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class JobRunRow(Base):
    """One row per claimed tick: the unique (job, scheduled_at) pair is what makes a tick run once."""

    __tablename__ = "job_runs"
    __table_args__ = (
        UniqueConstraint("job_name", "scheduled_at", name="uq_job_runs_tick"),
        Index("ix_job_runs_job_started", "job_name", "started_at"),
    )

    id: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    job_name: Mapped[str] = mapped_column(String(64))
    scheduled_at: Mapped[datetime]
    trigger: Mapped[str] = mapped_column(String(16), default="schedule")
    claimed_by: Mapped[str] = mapped_column(String(128))
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    outcome: Mapped[str] = mapped_column(String(16), default="running")
    error: Mapped[str] = mapped_column(Text, default="")
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    lease_expires_at: Mapped[datetime]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class EventRow(Base):
    """The outbox: written in the same transaction as the change it describes; `seq` orders delivery."""

    __tablename__ = "events"

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True, default=new_id)
    type: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str | None] = mapped_column(String(255))
    worker_id: Mapped[str | None] = mapped_column(String(36))
    time: Mapped[datetime] = mapped_column(index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class MetricSampleRow(Base):
    __tablename__ = "metric_samples"
    __table_args__ = (Index("ix_metric_samples_worker_ts", "worker_id", "ts"),)

    id: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    worker_id: Mapped[str] = mapped_column(ForeignKey("workers.id", ondelete="CASCADE"))
    ts: Mapped[datetime]
    cpu_percent: Mapped[float | None] = mapped_column(Float)
    memory_percent: Mapped[float | None] = mapped_column(Float)
    disk_percent: Mapped[float | None] = mapped_column(Float)
    labs_count: Mapped[int] = mapped_column(Integer, default=0)


class ProcessRow(Base):
    """Heartbeats of worker processes, in the database's clock, so the API knows whether any is alive."""

    __tablename__ = "processes"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    last_heartbeat: Mapped[datetime]
    jobs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ApiTokenRow(Base):
    """Static bearer tokens (token mode), stored as SHA-256 only."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]


class SessionRow(Base):
    """Browser sessions behind an HttpOnly cookie; the cookie value is stored only as its SHA-256. The OIDC
    refresh and ID tokens are stored encrypted (`auth.keys`)."""

    __tablename__ = "sessions"

    id_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255))
    roles: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    csrf_token: Mapped[str] = mapped_column(String(64))
    # Token mode: the SHA-256 of the API token the session was opened with; it lives only while that token does.
    token_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    refresh_token: Mapped[str | None] = mapped_column(Text)
    id_token: Mapped[str | None] = mapped_column(Text)
    access_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class LoginStateRow(Base):
    """An OIDC login in progress: `state`, `nonce` and the PKCE verifier, checked at the callback, bound to the
    browser that started it by the SHA-256 of its pre-login cookie."""

    __tablename__ = "login_states"

    state: Mapped[str] = mapped_column(String(64), primary_key=True)
    browser_sha256: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[str] = mapped_column(String(64))
    code_verifier: Mapped[str] = mapped_column(String(128))
    return_to: Mapped[str] = mapped_column(String(512), default="/")
    created_at: Mapped[datetime] = mapped_column(index=True)
