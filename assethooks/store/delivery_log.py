"""The delivery log: one row per attempt, written in batches so that it never caps throughput.

``DeliveryLogWriter.write`` calls back once its entry is committed: the consumers store a record's offset
only after that, so every attempt that happened is in the log (at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial

from sqlalchemy import Engine, Select, case, delete, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, aliased

from assethooks.completion import settle
from assethooks.errors import NotFoundError, StoreUnavailableError
from assethooks.store.db import capped_count, guarded, sqlite_time, write_through_outage
from assethooks.store.health import purge_stats, stats_rows, stats_statement, waiting_rows, waiting_statement
from assethooks.store.models import DeliveryLogRow, LogPositionRow

log = logging.getLogger(__name__)


@dataclass(slots=True)  # not frozen: creating one is on the hot path
class LogEntry:
    """One delivery attempt as it is logged."""

    webhook_id: int
    event: str
    asset_id: str | None
    delivery_id: str
    attempt: int
    success: bool
    status_code: int | None
    duration_ms: float
    error: str | None
    response_body: str | None
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    created_at: datetime
    next_attempt_at: datetime | None = None  # a failed attempt's retry: when it is due (None: no retry)


_COLUMNS = tuple(LogEntry.__dataclass_fields__)


def _insert_statement(mark: str) -> str:
    names, marks = ", ".join(_COLUMNS), ", ".join([mark] * len(_COLUMNS))
    return f"INSERT INTO {DeliveryLogRow.__tablename__} ({names}) VALUES ({marks})"  # noqa: S608 (constants)


def insert_entries(engine: Engine, entries: Sequence[LogEntry]) -> None:
    """Insert ``entries`` in one transaction, with the driver's ``executemany`` (the hot path: no ORM), and
    move each source partition's position (``log_positions``) up to the highest offset among them."""
    sqlite = engine.dialect.name == "sqlite"
    mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    statement = _insert_statement(mark)
    rows = [_row(entry, sqlite) for entry in entries]
    highest: dict[tuple[str, int], int] = {}
    for entry in entries:
        if entry.source_topic is not None and entry.source_partition is not None:
            where = (entry.source_topic, entry.source_partition)
            offset = entry.source_offset or 0
            if offset > highest.get(where, -1):
                highest[where] = offset
    # Rows that other processes update too are locked in one order (sorted), the busiest last.
    positions = [(topic, partition, offset) for (topic, partition), offset in sorted(highest.items())]
    upsert = _position_statement(mark, "MAX" if sqlite else "GREATEST")
    waiting = waiting_rows(entries, sqlite)
    stats = stats_rows(entries, sqlite)

    def run() -> None:
        with engine.begin() as connection:
            connection.exec_driver_sql(statement, rows)
            if positions:
                connection.exec_driver_sql(upsert, positions)
            if waiting:
                connection.exec_driver_sql(waiting_statement(mark), waiting)
            connection.exec_driver_sql(stats_statement(mark), stats)

    guarded(engine, run)


def _position_statement(mark: str, greatest: str) -> str:
    table = LogPositionRow.__tablename__
    return (
        f"INSERT INTO {table} (source_topic, source_partition, high_offset) VALUES ({mark}, {mark}, {mark}) "  # noqa: S608 (constants)
        f"ON CONFLICT (source_topic, source_partition) DO UPDATE SET "
        f"high_offset = {greatest}({table}.high_offset, excluded.high_offset)"
    )


def logged_positions(engine: Engine, topic: str, partitions: Iterable[int]) -> dict[int, int]:
    """For each of ``partitions`` of ``topic`` that the log holds attempts of, the highest source offset."""
    wanted = list(partitions)

    def run() -> dict[int, int]:
        statement = select(LogPositionRow.source_partition, LogPositionRow.high_offset).where(
            LogPositionRow.source_topic == topic, LogPositionRow.source_partition.in_(wanted)
        )
        with engine.connect() as connection:
            return {int(partition): int(offset) for partition, offset in connection.execute(statement)}

    return guarded(engine, run) if wanted else {}


def logged_deliveries(engine: Engine, delivery_ids: Iterable[str]) -> dict[str, tuple[int, bool]]:
    """For each of ``delivery_ids`` the log holds attempts of: the highest attempt number logged, and whether
    any attempt succeeded (one query on the ``delivery_id`` index)."""
    wanted = list(set(delivery_ids))

    def run() -> dict[str, tuple[int, bool]]:
        found: dict[str, tuple[int, bool]] = {}
        for start in range(0, len(wanted), _LOOKUP_BATCH):
            statement = (
                select(
                    DeliveryLogRow.delivery_id,
                    func.max(DeliveryLogRow.attempt),
                    func.max(case((DeliveryLogRow.success, 1), else_=0)),
                )
                .where(DeliveryLogRow.delivery_id.in_(wanted[start : start + _LOOKUP_BATCH]))
                .group_by(DeliveryLogRow.delivery_id)
            )
            with engine.connect() as connection:
                for delivery_id, attempt, succeeded in connection.execute(statement):
                    found[delivery_id] = (int(attempt), bool(succeeded))
        return found

    return guarded(engine, run) if wanted else {}


_LOOKUP_BATCH = 500


def _row(entry: LogEntry, sqlite: bool) -> tuple[object, ...]:
    """One entry as the driver takes it, in ``_COLUMNS`` order."""
    created: object = sqlite_time(entry.created_at) if sqlite else entry.created_at
    due = entry.next_attempt_at
    return (
        entry.webhook_id,
        entry.event,
        _text(entry.asset_id),
        entry.delivery_id,
        entry.attempt,
        entry.success,
        entry.status_code,
        entry.duration_ms,
        _text(entry.error),
        _text(entry.response_body),
        entry.source_topic,
        entry.source_partition,
        entry.source_offset,
        created,
        sqlite_time(due) if sqlite and due is not None else due,
    )


def _text(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL characters; an answer or a Kafka key may contain them.
    return value.replace("\x00", "\ufffd") if value and "\x00" in value else value


Committed = Callable[[BaseException | None], None]


@dataclass(slots=True)
class LoggedAttempt(LogEntry):
    """A logged attempt with its id in the log."""

    id: int = field(kw_only=True)


@dataclass(frozen=True)
class LogQuery:
    """Which logged attempts to select; ``None`` means any."""

    webhook_id: int | None = None
    event: str | None = None
    asset_id: str | None = None
    success: bool | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = 50
    newest_of_delivery: bool = False  # only the newest attempt of each delivery
    after: tuple[datetime, int] | None = None  # a page's cursor: only attempts older than (time, id)


def _select(query: LogQuery) -> Select[DeliveryLogRow]:
    statement = select(DeliveryLogRow).order_by(DeliveryLogRow.created_at.desc(), DeliveryLogRow.id.desc())
    conditions = {
        DeliveryLogRow.webhook_id: query.webhook_id,
        DeliveryLogRow.event: query.event,
        DeliveryLogRow.asset_id: query.asset_id,
        DeliveryLogRow.success: query.success,
    }
    for column, value in conditions.items():
        if value is not None:
            statement = statement.where(column == value)
    if query.since is not None:
        statement = statement.where(DeliveryLogRow.created_at >= query.since)
    if query.until is not None:
        statement = statement.where(DeliveryLogRow.created_at < query.until)
    if query.after is not None:
        moment, log_id = query.after
        statement = statement.where(
            (DeliveryLogRow.created_at < moment)
            | ((DeliveryLogRow.created_at == moment) & (DeliveryLogRow.id < log_id))
        )
    if query.newest_of_delivery:
        later = aliased(DeliveryLogRow)
        newest = select(func.max(later.id)).where(later.delivery_id == DeliveryLogRow.delivery_id)
        statement = statement.where(DeliveryLogRow.id == newest.scalar_subquery())
    if query.limit is not None:
        statement = statement.limit(query.limit)
    return statement


def query_attempts(engine: Engine, query: LogQuery) -> list[LoggedAttempt]:
    """The logged attempts matching ``query``, newest first."""

    def run() -> list[LoggedAttempt]:
        with Session(engine) as session:
            return [_attempt(row) for row in session.scalars(_select(query))]

    return guarded(engine, run)


def count_attempts(engine: Engine, query: LogQuery, *, cap: int) -> tuple[int, bool]:
    """How many logged attempts match ``query`` (its limit aside), counting at most ``cap`` rows so that
    the cost stays bounded: ``(count, exact)``; ``exact`` is false when there are more than ``cap``."""
    matching = _select(replace(query, limit=None)).with_only_columns(DeliveryLogRow.id).order_by(None)
    return capped_count(engine, matching, cap)


def next_attempts(engine: Engine, delivery_ids: Iterable[str]) -> dict[str, int]:
    """For each delivery id, the number its next attempt takes: one more than the highest attempt logged
    for it (1 when none is). One query per thousand ids."""
    wanted = sorted(set(delivery_ids))
    found: dict[str, int] = dict.fromkeys(wanted, 1)

    def run(chunk: list[str]) -> None:
        statement = (
            select(DeliveryLogRow.delivery_id, func.max(DeliveryLogRow.attempt))
            .where(DeliveryLogRow.delivery_id.in_(chunk))
            .group_by(DeliveryLogRow.delivery_id)
        )
        with Session(engine) as session:
            for delivery_id, highest in session.execute(statement):
                found[delivery_id] = int(highest) + 1

    for start in range(0, len(wanted), _IN_CHUNK):
        guarded(engine, partial(run, wanted[start : start + _IN_CHUNK]))
    return found


_IN_CHUNK = 1000  # values in one IN (…): well within SQLite's and PostgreSQL's limits


def recent_entries(engine: Engine, *, webhook_id: int | None = None, limit: int = 100) -> list[LoggedAttempt]:
    """The newest logged attempts, newest first, optionally for one webhook."""
    return query_attempts(engine, LogQuery(webhook_id=webhook_id, limit=limit))


def get_attempt(engine: Engine, log_id: int) -> LoggedAttempt:
    """One logged attempt; ``NotFoundError`` when there is none with ``log_id``."""

    def run() -> LoggedAttempt:
        with Session(engine) as session:
            row = session.get(DeliveryLogRow, log_id)
            if row is None:
                raise NotFoundError(f"no delivery log entry with id {log_id}")
            return _attempt(row)

    return guarded(engine, run)


def newest_attempt(engine: Engine, delivery_id: str) -> LoggedAttempt:
    """The newest logged attempt of a delivery."""

    def run() -> LoggedAttempt:
        with Session(engine) as session:
            statement = (
                select(DeliveryLogRow)
                .where(DeliveryLogRow.delivery_id == delivery_id)
                .order_by(DeliveryLogRow.id.desc())
                .limit(1)
            )
            row = session.scalars(statement).first()
            if row is None:
                raise NotFoundError(f"no logged attempt of delivery {delivery_id}")
            return _attempt(row)

    return guarded(engine, run)


def purge_attempts(engine: Engine, before: datetime, *, batch: int = 5000) -> int:
    """Delete the attempts logged before ``before``, ``batch`` rows per transaction; return how many."""
    removed = 0
    while True:

        def one_batch() -> int:
            ids = select(DeliveryLogRow.id).where(DeliveryLogRow.created_at < before).limit(batch)
            with engine.begin() as connection:
                return connection.execute(delete(DeliveryLogRow).where(DeliveryLogRow.id.in_(ids))).rowcount

        count = guarded(engine, one_batch)
        removed += count
        if count < batch:
            purge_stats(engine, before)
            return removed


def _attempt(row: DeliveryLogRow) -> LoggedAttempt:
    return LoggedAttempt(**{name: getattr(row, name) for name in LoggedAttempt.__dataclass_fields__})


class DeliveryLogWriter:
    """Collects log entries and commits them in batches from one background thread.

    A batch is written when it reaches ``batch_size`` entries or ``interval`` seconds after its first
    entry, or at once while someone waits for the work to finish (``hurry``: a stop, a revocation). When
    the database is unavailable the batch is kept and retried with growing pauses, and writers wait, which
    in turn pauses consumption: nothing is dropped.
    """

    def __init__(self, engine: Engine, *, batch_size: int = 500, interval: float = 0.05) -> None:
        self._engine = engine
        self._batch_size = batch_size
        self._interval = interval
        self._pending: list[tuple[LogEntry, Committed]] = []
        self._wake = asyncio.Event()
        self._hurrying = 0
        self._hurried = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="delivery-log")
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._give_up_at = 0.0

    def start(self) -> None:
        """Start the background flusher on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="delivery-log")

    def write(self, entry: LogEntry, committed: Committed) -> None:
        """Queue ``entry``; ``committed(None)`` is called once it is committed (``committed(error)`` when it
        cannot be)."""
        if self._closing:
            raise RuntimeError("the delivery log writer is closed")
        self._pending.append((entry, committed))
        if len(self._pending) == 1 or len(self._pending) >= self._batch_size:
            self._wake.set()

    def hurry(self, on: bool) -> None:
        """Write batches at once (``on``) while a stop or a revocation waits for the work, so that what
        was done is in the log before the offsets are committed; ``hurry(False)`` ends one ``hurry(True)``."""
        self._hurrying += 1 if on else -1
        if self._hurrying > 0:
            self._hurried.set()
            self._wake.set()
        else:
            self._hurried.clear()

    def written(self, entry: LogEntry) -> asyncio.Future[None]:
        """Queue ``entry``; the future completes once it is committed (for paths that await, not hot ones)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.write(entry, partial(settle, done))
        return done

    async def _run(self) -> None:
        while not (self._closing and not self._pending):
            await self._wake.wait()
            self._wake.clear()
            if len(self._pending) < self._batch_size and not self._closing and not self._hurrying:
                with contextlib.suppress(TimeoutError):  # let a batch gather, unless hurried meanwhile
                    await asyncio.wait_for(self._hurried.wait(), self._interval)
            while self._pending:
                batch, self._pending = self._pending[: self._batch_size], self._pending[self._batch_size :]
                try:
                    await self._commit(batch)
                except Exception as exc:  # unexpected: fail these writes (their records stay uncommitted)
                    for _, committed in batch:
                        committed(exc)

    async def _commit(self, batch: list[tuple[LogEntry, Committed]]) -> None:
        loop = asyncio.get_running_loop()
        entries = [entry for entry, _ in batch]
        try:
            await write_through_outage(
                lambda: loop.run_in_executor(self._executor, insert_entries, self._engine, entries),
                "delivery log",
                give_up=lambda: self._closing and loop.time() > self._give_up_at,
            )
        except StoreUnavailableError as exc:
            for _, committed in batch:
                committed(exc)  # the records stay uncommitted and will be processed again
            return
        except DBAPIError:  # a value the database refuses: keep every row that it accepts
            await loop.run_in_executor(self._executor, self._insert_one_by_one, entries)
        for _, committed in batch:
            committed(None)

    def _insert_one_by_one(self, entries: list[LogEntry]) -> None:
        for entry in entries:
            try:
                insert_entries(self._engine, [entry])
            except DBAPIError as exc:
                log.error(
                    "delivery log entry refused, not logged: webhook=%d delivery=%s attempt=%d: %s",
                    entry.webhook_id,
                    entry.delivery_id,
                    entry.attempt,
                    str(exc.orig).strip().splitlines()[0] if exc.orig else exc,
                )

    async def close(self, timeout: float = 30.0) -> None:
        """Write what is pending (giving up after ``timeout`` if the database is unavailable) and stop."""
        self._closing = True
        self._give_up_at = asyncio.get_running_loop().time() + timeout
        self._wake.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)
