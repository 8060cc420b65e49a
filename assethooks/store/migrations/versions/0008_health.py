"""Endpoint health and the operators' status: delivery counts per webhook and five minutes, the deliveries
waiting for a retry, when a failed attempt's retry is due, the circuit state the processes last reported,
and the alerts producer's runs.

``delivery_stats`` and ``waiting_retries`` are written in the transaction that writes the log rows, so
health reads at most 288 rows per webhook and day and one row per waiting delivery instead of the log.
Here they are filled from the log: the counts of its last day, and the deliveries of its last two days
whose newest attempt failed without a dead letter (when their retry is due is not known for those: the
failed attempt's time stands in).

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
_SINCE = {  # a day ago, and two days ago
    "sqlite": ("datetime('now', '-1 day')", "datetime('now', '-2 days')"),
    "postgresql": ("now() - interval '1 day'", "now() - interval '2 days'"),
}


def upgrade() -> None:
    """Create delivery_stats, waiting_retries and alert_runs, the circuit columns of webhooks, the log's
    next_attempt_at and an index of dead letters by delivery; fill the first two from the log."""
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
    op.create_table(
        "waiting_retries",
        sa.Column("delivery_id", sa.String(64), primary_key=True),
        sa.Column("webhook_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("waiting", sa.Boolean(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("logged_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_waiting_retries_webhook", "waiting_retries", ["webhook_id", "waiting"])
    with op.batch_alter_table("webhooks") as table:
        table.add_column(sa.Column("circuit_open_until", UTCDateTime(), nullable=True))
        table.add_column(sa.Column("circuit_changed_at", UTCDateTime(), nullable=True))
    with op.batch_alter_table("delivery_logs") as table:
        table.add_column(sa.Column("next_attempt_at", UTCDateTime(), nullable=True))
    op.create_index("ix_dead_letters_delivery_id", "dead_letters", ["delivery_id"])
    dialect = op.get_bind().dialect.name
    bucket, (since, waiting_since) = _BUCKET[dialect], _SINCE[dialect]
    op.execute(
        "INSERT INTO delivery_stats (webhook_id, bucket, succeeded, failed, duration_ms) "  # noqa: S608 (constants)
        f"SELECT webhook_id, {bucket}, "
        "SUM(CASE WHEN success THEN 1 ELSE 0 END), SUM(CASE WHEN success THEN 0 ELSE 1 END), "
        "SUM(duration_ms) "
        f"FROM delivery_logs WHERE created_at >= {since} GROUP BY webhook_id, {bucket}"
    )
    op.execute(
        "INSERT INTO waiting_retries (delivery_id, webhook_id, attempt, waiting, next_attempt_at, logged_at) "  # noqa: S608 (constants)
        "SELECT f.delivery_id, MAX(f.webhook_id), MAX(f.attempt), TRUE, MAX(f.created_at), MAX(f.created_at) "
        "FROM delivery_logs f "
        f"WHERE NOT f.success AND f.created_at >= {waiting_since} "
        "AND NOT EXISTS (SELECT 1 FROM delivery_logs later WHERE later.delivery_id = f.delivery_id "
        "AND (later.success OR later.attempt > f.attempt)) "
        "AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.delivery_id = f.delivery_id) "
        "GROUP BY f.delivery_id"
    )


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_dead_letters_delivery_id", "dead_letters")
    with op.batch_alter_table("delivery_logs") as table:
        table.drop_column("next_attempt_at")
    with op.batch_alter_table("webhooks") as table:
        table.drop_column("circuit_changed_at")
        table.drop_column("circuit_open_until")
    op.drop_table("alert_runs")
    op.drop_table("waiting_retries")
    op.drop_table("delivery_stats")
