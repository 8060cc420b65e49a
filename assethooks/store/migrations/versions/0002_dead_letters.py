"""The dead-letter index: one row per dead-letter record, with its state.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from assethooks.store.models import BigId, UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the dead_letters table."""
    op.create_table(
        "dead_letters",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("webhook_id", sa.Integer(), nullable=True),
        sa.Column("event", sa.String(100), nullable=True),
        sa.Column("asset_id", sa.String(100), nullable=True),
        sa.Column("delivery_id", sa.String(64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("dead_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("topic", "partition", "offset", name="uq_dead_letters_position"),
    )
    op.create_index("ix_dead_letters_status_dead_at", "dead_letters", ["status", "dead_at"])
    op.create_index("ix_dead_letters_webhook", "dead_letters", ["webhook_id"])


def downgrade() -> None:
    """Drop the dead_letters table."""
    op.drop_table("dead_letters")
