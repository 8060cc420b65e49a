"""Schema migrations (Alembic), run from code: ``assethooks db upgrade`` and the start-up check."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from assethooks.errors import ConfigError
from assethooks.store.db import describe, guarded

_SCRIPTS = Path(__file__).with_name("migrations")


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


def head_revision() -> str:
    """The newest revision the code knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or ``None`` for an empty database."""

    def read() -> str | None:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    return guarded(engine, read)


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Migrate the database to ``revision``; return the revisions before and after."""
    before = current_revision(engine)
    config = _config()

    def run() -> None:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

    guarded(engine, run)
    after = current_revision(engine)
    assert after is not None
    return before, after


def require_current(engine: Engine) -> None:
    """Raise ``ConfigError`` unless the database schema is at the code's newest revision: the database
    answers but is not set up for this code, a set-up problem rather than an outage."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        state = "empty" if current is None else f"at revision {current}, the code needs {head}"
        raise ConfigError(f"the database {describe(engine)} is {state}: run `assethooks db upgrade`")
