"""Endpoint control: a webhook's rate limit (``20/s``, ``50/m``) and its payload filter (JMESPath).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add webhooks.rate_limit and webhooks.filter (none on existing webhooks)."""
    with op.batch_alter_table("webhooks") as batch:
        batch.add_column(sa.Column("rate_limit", sa.String(20), nullable=True))
        batch.add_column(sa.Column("filter", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop both columns."""
    with op.batch_alter_table("webhooks") as batch:
        batch.drop_column("filter")
        batch.drop_column("rate_limit")
