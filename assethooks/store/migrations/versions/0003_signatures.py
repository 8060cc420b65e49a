"""Signature scheme per webhook (seed or Standard Webhooks), and the previous secret during a rotation.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from assethooks.store.models import UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the signature scheme and the rotation columns."""
    with op.batch_alter_table("webhooks") as table:
        table.add_column(sa.Column("signature", sa.String(20), nullable=False, server_default="seed"))
        table.add_column(sa.Column("previous_secret", sa.String(1000), nullable=True))
        table.add_column(sa.Column("previous_secret_until", UTCDateTime(), nullable=True))


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("webhooks") as table:
        table.drop_column("previous_secret_until")
        table.drop_column("previous_secret")
        table.drop_column("signature")
