"""Webhook ids are never given again: on SQLite the table gets AUTOINCREMENT (PostgreSQL's sequence never
reuses ids). Without it, deleting the newest webhook and creating another gave the new one the old id, and a
retry still waiting for the deleted webhook would have gone to the new one's URL, signed with its secret.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Rebuild the SQLite table with AUTOINCREMENT (rows and ids kept)."""
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("webhooks", recreate="always", table_kwargs={"sqlite_autoincrement": True}):
            pass


def downgrade() -> None:
    """Rebuild it without."""
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(
            "webhooks", recreate="always", table_kwargs={"sqlite_autoincrement": False}
        ):
            pass
