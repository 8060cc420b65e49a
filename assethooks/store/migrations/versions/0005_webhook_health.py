"""Webhook health: since when it fails, and why it was disabled automatically.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from assethooks.store.models import UTCDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add disabled_reason and failing_since."""
    with op.batch_alter_table("webhooks") as table:
        table.add_column(sa.Column("disabled_reason", sa.Text(), nullable=True))
        table.add_column(sa.Column("failing_since", UTCDateTime(), nullable=True))


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("webhooks") as table:
        table.drop_column("failing_since")
        table.drop_column("disabled_reason")
