"""The dead-letter index: where each dead-letter record is, what it is about, and its state.

The dead-letter topic is the source of truth for the records; this table lets operators find them and
remembers which were replayed, purged or resolved, so that doing any of these twice does nothing the
second time. A pending delivery whose delivery id was delivered after it died (by ``logs retry``, a replay
of the source topic, another dead letter of the same delivery) is ``resolved``: sending it again would
only make a duplicate.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, Select, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from assethooks.errors import NotFoundError
from assethooks.store.db import capped_count, guarded
from assethooks.store.models import DeadLetterRow, DeliveryLogRow


class DeadLetterStatus(StrEnum):
    """Where a dead letter stands."""

    PENDING = "pending"
    REPLAYED = "replayed"  # sent back through the pipeline by `dlq replay`
    PURGED = "purged"  # dropped by `dlq purge`
    RESOLVED = "resolved"  # its delivery succeeded later, at ``resolved_at``, by another re-send


@dataclass(frozen=True)
class DeadLetterEntry:
    """One indexed dead-letter record."""

    id: int
    topic: str
    partition: int
    offset: int
    kind: str
    reason: str
    webhook_id: int | None
    event: str | None
    asset_id: str | None
    delivery_id: str | None
    attempts: int
    dead_at: datetime
    status: str
    resolved_at: datetime | None


@dataclass(frozen=True)
class DeadLetterQuery:
    """Which dead letters to select; ``None`` means any."""

    ids: Sequence[int] | None = None
    status: DeadLetterStatus | None = DeadLetterStatus.PENDING
    webhook_id: int | None = None
    event: str | None = None
    kind: str | None = None
    reason: str | None = None  # a part of the reason, case-insensitive
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = None


def _select(query: DeadLetterQuery) -> Select[DeadLetterRow]:
    statement = select(DeadLetterRow).order_by(DeadLetterRow.id)
    for column, value in {
        DeadLetterRow.status: query.status,
        DeadLetterRow.webhook_id: query.webhook_id,
        DeadLetterRow.event: query.event,
        DeadLetterRow.kind: query.kind,
    }.items():
        if value is not None:
            statement = statement.where(column == value)
    if query.ids is not None:
        statement = statement.where(DeadLetterRow.id.in_(query.ids))
    if query.reason is not None:
        statement = statement.where(func.lower(DeadLetterRow.reason).contains(query.reason.lower()))
    if query.since is not None:
        statement = statement.where(DeadLetterRow.dead_at >= query.since)
    if query.until is not None:
        statement = statement.where(DeadLetterRow.dead_at < query.until)
    if query.limit is not None:
        statement = statement.limit(query.limit)
    return statement


def _entry(row: DeadLetterRow) -> DeadLetterEntry:
    return DeadLetterEntry(**{name: getattr(row, name) for name in DeadLetterEntry.__dataclass_fields__})


def find(engine: Engine, query: DeadLetterQuery) -> list[DeadLetterEntry]:
    """The dead letters matching ``query``, oldest first."""

    def run() -> list[DeadLetterEntry]:
        with Session(engine) as session:
            return [_entry(row) for row in session.scalars(_select(query))]

    return guarded(engine, run)


def count(engine: Engine, query: DeadLetterQuery, *, cap: int) -> tuple[int, bool]:
    """How many dead letters match ``query`` (its limit aside), counting at most ``cap`` rows so that the
    cost stays bounded: ``(count, exact)``; ``exact`` is false when there are more than ``cap``."""
    matching = _select(replace(query, limit=None)).with_only_columns(DeadLetterRow.id).order_by(None)
    return capped_count(engine, matching, cap)


def get(engine: Engine, entry_id: int) -> DeadLetterEntry:
    """One dead letter; ``NotFoundError`` when there is none with ``entry_id``."""

    def run() -> DeadLetterEntry:
        with Session(engine) as session:
            row = session.get(DeadLetterRow, entry_id)
            if row is None:
                raise NotFoundError(f"no dead letter with id {entry_id}")
            return _entry(row)

    return guarded(engine, run)


def indexed_up_to(engine: Engine, topic: str) -> dict[int, int]:
    """For each partition of ``topic``, the highest offset already indexed."""

    def run() -> dict[int, int]:
        statement = (
            select(DeadLetterRow.partition, func.max(DeadLetterRow.offset))
            .where(DeadLetterRow.topic == topic)
            .group_by(DeadLetterRow.partition)
        )
        with Session(engine) as session:
            return {int(partition): int(offset) for partition, offset in session.execute(statement)}

    return guarded(engine, run)


def index(engine: Engine, rows: Iterable[dict[str, Any]]) -> None:
    """Add rows to the index; a record already indexed is left as it is."""
    batch = [{**row, "status": DeadLetterStatus.PENDING.value, "resolved_at": None} for row in rows]
    if not batch:
        return
    dialect = engine.dialect.name
    statement = (
        sqlite.insert(DeadLetterRow).on_conflict_do_nothing()
        if dialect == "sqlite"
        else postgresql.insert(DeadLetterRow).on_conflict_do_nothing()
        if dialect == "postgresql"
        else insert(DeadLetterRow)
    )

    def run() -> None:
        with engine.begin() as connection:
            connection.execute(statement, batch)

    guarded(engine, run)


def resolve(engine: Engine, ids: Sequence[int], status: DeadLetterStatus, now: datetime) -> int:
    """Mark the still-pending entries among ``ids`` as ``status``; return how many changed."""
    if not ids:
        return 0

    def run() -> int:
        statement = (
            update(DeadLetterRow)
            .where(DeadLetterRow.id.in_(ids), DeadLetterRow.status == DeadLetterStatus.PENDING.value)
            .values(status=status.value, resolved_at=now)
        )
        with engine.begin() as connection:
            return connection.execute(statement).rowcount

    return guarded(engine, run)


def resolve_delivered(engine: Engine) -> int:
    """Mark ``resolved`` every pending dead letter whose delivery has a successful attempt logged at or
    after the time it died, with that attempt's time; return how many changed."""
    log = DeliveryLogRow
    delivered_at = (
        select(func.min(log.created_at))
        .where(
            log.delivery_id == DeadLetterRow.delivery_id,
            log.success.is_(True),
            log.created_at >= DeadLetterRow.dead_at,
        )
        .scalar_subquery()
    )
    statement = (
        update(DeadLetterRow)
        .where(
            DeadLetterRow.status == DeadLetterStatus.PENDING.value,
            DeadLetterRow.delivery_id.is_not(None),
            delivered_at.is_not(None),
        )
        .values(status=DeadLetterStatus.RESOLVED.value, resolved_at=delivered_at)
    )

    def run() -> int:
        with engine.begin() as connection:
            return connection.execute(statement).rowcount

    return guarded(engine, run)
