"""Endpoint health and the operators' status: delivery counts per webhook and five minutes, the circuit
state the processes last reported, a partial index on failed attempts, an index of dead letters by delivery,
and the alerts producer's runs.

``delivery_stats`` is written in the transaction that writes the log rows (one upsert per webhook and
bucket of a batch), so health over 24 hours sums at most 288 rows per webhook instead of reading the log.
It is filled from the log's last 24 hours here.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from assethooks.store.models import UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BUCKET = {  # the start of created_at's five-minute bucket, as the dialect stores created_at
    "sqlite": "strftime('%Y-%m-%d %H:%M:%S.000000', "
    "(CAST(strftime('%s', created_at) AS INTEGER) / 300) * 300, 'unixepoch')",
    "postgresql": "to_timestamp(floor(extract(epoch from created_at) / 300) * 300)",
}
_SINCE = {
    "sqlite": "datetime('now', '-1 day')",
    "postgresql": "now() - interval '1 day'",
}


def upgrade() -> None:
    """Create the tables and the index; fill delivery_stats from the last day of the log."""
    op.create_table(
        "delivery_stats",
        sa.Column("webhook_id", sa.Integer(), primary_key=True),
        sa.Column("bucket", UTCDateTime(), primary_key=True),
        sa.Column("succeeded", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
    )
    op.create_table(
        "alert_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=False),
        sa.Column("due", sa.Integer(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("already", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
    )
    with op.batch_alter_table("webhooks") as table:
        table.add_column(sa.Column("circuit_open_until", UTCDateTime(), nullable=True))
        table.add_column(sa.Column("circuit_changed_at", UTCDateTime(), nullable=True))
    op.create_index(
        "ix_delivery_logs_failed",
        "delivery_logs",
        ["webhook_id", "created_at"],
        sqlite_where=sa.text("NOT success"),
        postgresql_where=sa.text("NOT success"),
    )
    op.create_index("ix_dead_letters_delivery_id", "dead_letters", ["delivery_id"])
    dialect = op.get_bind().dialect.name
    bucket, since = _BUCKET[dialect], _SINCE[dialect]
    op.execute(
        "INSERT INTO delivery_stats (webhook_id, bucket, succeeded, failed, duration_ms) "  # noqa: S608 (constants)
        f"SELECT webhook_id, {bucket}, "
        "SUM(CASE WHEN success THEN 1 ELSE 0 END), SUM(CASE WHEN success THEN 0 ELSE 1 END), "
        "SUM(duration_ms) "
        f"FROM delivery_logs WHERE created_at >= {since} GROUP BY webhook_id, {bucket}"
    )


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_dead_letters_delivery_id", "dead_letters")
    op.drop_index("ix_delivery_logs_failed", "delivery_logs")
    with op.batch_alter_table("webhooks") as table:
        table.drop_column("circuit_changed_at")
        table.drop_column("circuit_open_until")
    op.drop_table("alert_runs")
    op.drop_table("delivery_stats")
