"""Alembic environment: migrations run on the connection that ``assethooks.store.migrate`` passes in."""

from alembic import context

from assethooks.store.models import Base

connection = context.config.attributes["connection"]
# Batch mode lets later migrations alter tables on SQLite, which cannot ALTER most column changes.
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
