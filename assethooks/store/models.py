"""The tables of the SQL store, as typed SQLAlchemy 2.0 models (migrations in ``migrations/``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite keeps naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Store ``value`` in UTC; naive datetimes are refused, they are a bug."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Base of every model of the store."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime}


class WebhookRow(Base):
    """A webhook subscription (the seed's "webhook")."""

    __tablename__ = "webhooks"
    __table_args__ = ({"sqlite_autoincrement": True},)  # an id is never given to another webhook

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str] | None] = mapped_column(JSON)  # null = every event
    secret: Mapped[str | None] = mapped_column(String(1000))
    headers: Mapped[dict[str, str]] = mapped_column(JSON)
    active: Mapped[bool]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    signature: Mapped[str] = mapped_column(String(20), server_default="seed")
    previous_secret: Mapped[str | None] = mapped_column(String(1000))
    previous_secret_until: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(Text)  # why it was switched off automatically
    failing_since: Mapped[datetime | None]  # first failure after the last success
    circuit_open_until: Mapped[datetime | None]  # as a process last reported its circuit breaker
    circuit_changed_at: Mapped[datetime | None]
    rate_limit: Mapped[str | None] = mapped_column(String(20))  # "20/s", "50/m"
    filter: Mapped[str | None] = mapped_column(Text)  # a JMESPath expression


class DeliveryLogRow(Base):
    """One delivery attempt: what was sent where, and what came back."""

    __tablename__ = "delivery_logs"
    __table_args__ = (
        Index("ix_delivery_logs_created_at", "created_at"),
        Index("ix_delivery_logs_webhook_created", "webhook_id", "created_at"),
        Index("ix_delivery_logs_delivery_id", "delivery_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    webhook_id: Mapped[int]
    event: Mapped[str] = mapped_column(String(100))
    asset_id: Mapped[str | None] = mapped_column(String(100))
    delivery_id: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int]
    success: Mapped[bool]
    status_code: Mapped[int | None]
    duration_ms: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    response_body: Mapped[str | None] = mapped_column(Text)
    source_topic: Mapped[str | None] = mapped_column(String(255))
    source_partition: Mapped[int | None]
    source_offset: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime | None]  # a failed attempt's retry: when it is due


class DeliveryStatsRow(Base):
    """Attempts of one webhook in one five-minute bucket (written with the log rows; health reads it)."""

    __tablename__ = "delivery_stats"

    webhook_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket: Mapped[datetime] = mapped_column(primary_key=True)  # the bucket's start
    succeeded: Mapped[int]
    failed: Mapped[int]
    duration_ms: Mapped[float] = mapped_column(Float)  # the sum over the bucket's attempts


class WaitingRetryRow(Base):
    """The newest logged attempt of a delivery that failed once or was retried: ``waiting`` for its retry
    (due at ``next_attempt_at``) or settled (a success or a dead letter). Written with the log rows."""

    __tablename__ = "waiting_retries"
    __table_args__ = (Index("ix_waiting_retries_webhook", "webhook_id", "waiting"),)

    delivery_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    webhook_id: Mapped[int]
    attempt: Mapped[int]
    waiting: Mapped[bool]
    next_attempt_at: Mapped[datetime | None]
    logged_at: Mapped[datetime]  # when that attempt was made


class LogPositionRow(Base):
    """The highest source offset the delivery log holds an attempt of, per source partition."""

    __tablename__ = "log_positions"

    source_topic: Mapped[str] = mapped_column(String(255), primary_key=True)
    source_partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    high_offset: Mapped[int] = mapped_column(BigInteger)


class DeadLetterRow(Base):
    """A record of the dead-letter topic, indexed so that operators can list, replay or purge it.

    The topic holds the record itself; this row holds where it is, what it is about, and its state:
    ``pending`` until it is replayed or purged.
    """

    __tablename__ = "dead_letters"
    __table_args__ = (
        UniqueConstraint("topic", "partition", "offset", name="uq_dead_letters_position"),
        Index("ix_dead_letters_status_dead_at", "status", "dead_at"),
        Index("ix_dead_letters_webhook", "webhook_id"),
        Index("ix_dead_letters_delivery_id", "delivery_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    topic: Mapped[str] = mapped_column(String(255))
    partition: Mapped[int]
    offset: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(Text)
    webhook_id: Mapped[int | None]
    event: Mapped[str | None] = mapped_column(String(100))
    asset_id: Mapped[str | None] = mapped_column(String(100))
    delivery_id: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int]
    dead_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(20))
    resolved_at: Mapped[datetime | None]


class AssetStateRow(Base):
    """What the alerts need to know of one asset, projected from the asset stream."""

    __tablename__ = "asset_states"

    asset_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)  # the last ``asset`` object seen
    gone: Mapped[bool]  # deleted or liquidated: no more alerts
    warranty_end: Mapped[str | None] = mapped_column(String(10))  # ISO date
    maintenance_date: Mapped[str | None] = mapped_column(String(10))
    checkout_key: Mapped[str | None] = mapped_column(String(100))  # identifies the open checkout
    checkout_due: Mapped[datetime | None]
    quantity: Mapped[float | None] = mapped_column(Float)
    min_quantity: Mapped[float | None] = mapped_column(Float)
    stock_drops: Mapped[int]  # how many times the stock went below its minimum
    last_partition: Mapped[int]
    last_offset: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class AlertRunRow(Base):
    """One run of the alerts producer: the time it computed alerts for, and what it did."""

    __tablename__ = "alert_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime]
    finished_at: Mapped[datetime]
    due: Mapped[int]
    sent: Mapped[int]
    already: Mapped[int]
    failed: Mapped[int]


class AlertRow(Base):
    """One alert condition: claimed by a producer, then sent; the key makes each condition alert once."""

    __tablename__ = "alerts"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    event: Mapped[str] = mapped_column(String(100))
    asset_id: Mapped[str] = mapped_column(String(100))
    claimed_at: Mapped[datetime]
    claimed_by: Mapped[str] = mapped_column(String(100))
    sent_at: Mapped[datetime | None]
