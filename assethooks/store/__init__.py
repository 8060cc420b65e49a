"""The SQL store: webhook subscriptions and the delivery log, on SQLite or PostgreSQL (SQLAlchemy 2.0)."""
