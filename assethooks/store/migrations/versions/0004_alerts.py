"""The asset-state projection and the alert conditions already claimed or sent.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from assethooks.store.models import UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create asset_states and alerts."""
    op.create_table(
        "asset_states",
        sa.Column("asset_id", sa.String(100), primary_key=True),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.Column("gone", sa.Boolean(), nullable=False),
        sa.Column("warranty_end", sa.String(10), nullable=True),
        sa.Column("maintenance_date", sa.String(10), nullable=True),
        sa.Column("checkout_key", sa.String(100), nullable=True),
        sa.Column("checkout_due", UTCDateTime(), nullable=True),
        sa.Column("quantity", sa.Float(), nullable=True),
        sa.Column("min_quantity", sa.Float(), nullable=True),
        sa.Column("stock_drops", sa.Integer(), nullable=False),
        sa.Column("last_partition", sa.Integer(), nullable=False),
        sa.Column("last_offset", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "alerts",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("event", sa.String(100), nullable=False),
        sa.Column("asset_id", sa.String(100), nullable=False),
        sa.Column("claimed_at", UTCDateTime(), nullable=False),
        sa.Column("claimed_by", sa.String(100), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
    )


def downgrade() -> None:
    """Drop both tables."""
    op.drop_table("alerts")
    op.drop_table("asset_states")
