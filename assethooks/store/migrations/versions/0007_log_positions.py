"""The delivery log's position per source partition: the highest source offset it holds an attempt of.

A record read again at or below it may have been delivered already; above it, never. Kept up to date in the
transaction that writes the log rows, so that the normal path pays one upsert per partition and batch.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create log_positions and fill it from the log."""
    op.create_table(
        "log_positions",
        sa.Column("source_topic", sa.String(255), primary_key=True),
        sa.Column("source_partition", sa.Integer(), primary_key=True),
        sa.Column("high_offset", sa.BigInteger(), nullable=False),
    )
    op.execute(
        "INSERT INTO log_positions (source_topic, source_partition, high_offset) "
        "SELECT source_topic, source_partition, MAX(source_offset) FROM delivery_logs "
        "WHERE source_topic IS NOT NULL AND source_partition IS NOT NULL AND source_offset IS NOT NULL "
        "GROUP BY source_topic, source_partition"
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_table("log_positions")
