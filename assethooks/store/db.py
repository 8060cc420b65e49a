"""Engines for the SQL store: SQLite (WAL, busy timeout) by default, PostgreSQL through psycopg 3; turning
outages into ``StoreUnavailableError``, and riding them out in the batch writers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, Select, create_engine, event, func, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from assethooks.errors import ConfigError, StoreUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")

OUTAGE_FIRST_PAUSE = 0.5  # seconds before a batch is written again; doubled each time up to the maximum
OUTAGE_MAX_PAUSE = 10.0


def sqlite_time(moment: datetime) -> str:
    """``moment`` as UTCDateTime stores it on SQLite: naive UTC text, YYYY-MM-DD HH:MM:SS.ffffff (for
    statements that bypass the ORM on the hot path)."""
    utc = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    return utc.replace(tzinfo=None).isoformat(" ", "microseconds")


def database_url(raw: str) -> URL:
    """Parse a database URL; plain ``postgresql://`` means the psycopg 3 driver."""
    url = make_url(raw)
    if url.drivername in {"postgresql", "postgres"}:
        url = url.set(drivername="postgresql+psycopg")
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the dispatcher write the delivery log while the CLI reads it; FULL makes a commit survive
    # a power loss too, since offsets are committed to Kafka right after the log rows.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(raw_url: str) -> Engine:
    """Create the engine for ``raw_url``; raise ``ConfigError`` when its driver is not installed."""
    url = database_url(raw_url)
    try:
        if url.get_backend_name() == "sqlite":
            engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(
                url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args={"connect_timeout": 5}
            )
    except ModuleNotFoundError as exc:  # an installation or settings problem, not an outage
        raise ConfigError(
            f"no driver for {url.get_backend_name()}: install asset-webhooks[postgres] ({exc.name})"
        ) from None
    return engine


def describe(engine: Engine) -> str:
    """The engine's URL without its password, for messages."""
    return engine.url.render_as_string(hide_password=True)


def guarded(engine: Engine, operation: Callable[[], T]) -> T:
    """Run ``operation``; turn failures to reach or use the database (connection refused or lost, database
    locked or missing) into a one-line ``StoreUnavailableError``. Errors about the data itself (constraint,
    value) are not outages and propagate unchanged."""
    try:
        return operation()
    except DBAPIError as exc:
        if not isinstance(exc, OperationalError | InterfaceError) and not exc.connection_invalidated:
            raise
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise StoreUnavailableError(f"cannot use the database {describe(engine)}: {detail}") from None


def capped_count(engine: Engine, matching: Select[Any], cap: int) -> tuple[int, bool]:
    """How many rows ``matching`` selects (best one narrow column, unordered), counting at most ``cap``
    rows so that the cost stays bounded: ``(count, exact)``; ``exact`` is false when there are more."""
    statement = select(func.count()).select_from(matching.limit(cap + 1).subquery())

    def run() -> int:
        with Session(engine) as session:
            return int(session.scalar(statement) or 0)

    found = guarded(engine, run)
    return min(found, cap), found <= cap


async def write_through_outage(
    write: Callable[[], Awaitable[T]], what: str, *, give_up: Callable[[], bool] = lambda: False
) -> T:
    """Await ``write()`` until it does not raise ``StoreUnavailableError``: while the database is unavailable,
    log a warning naming ``what`` and try again after a pause that doubles up to ``OUTAGE_MAX_PAUSE``. The
    error is raised once ``give_up()`` is true (after a failed try); other errors propagate at once."""
    pause = OUTAGE_FIRST_PAUSE
    while True:
        try:
            return await write()
        except StoreUnavailableError as exc:
            if give_up():
                raise
            log.warning("%s not written, retrying in %.1fs: %s", what, pause, exc)
            await asyncio.sleep(pause)
            pause = min(pause * 2, OUTAGE_MAX_PAUSE)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits when the block succeeds and rolls back when it raises."""
    with factory() as session, session.begin():
        yield session
