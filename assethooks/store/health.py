"""Endpoint health from the store, for the CLI, the API and the page: attempts per webhook over the last
hour and day, the newest attempt, since when it fails, its circuit as the processes last reported it, the
deliveries waiting for a retry and the pending dead letters.

Cheap on a log of millions of rows. Counts come from ``delivery_stats`` (attempts per webhook and five-minute
bucket, written in the transaction that writes the log rows: at most 288 rows per webhook and day); the
newest attempt is one index lookup per webhook; the waiting deliveries read only failed attempts (a
partial index) of the retry window. "The last hour" is the last twelve buckets: 55 to 60 minutes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Engine, case, delete, func, select
from sqlalchemy.orm import Session

from assethooks.store.db import guarded, sqlite_time
from assethooks.store.models import (
    DeadLetterRow,
    DeliveryLogRow,
    DeliveryStatsRow,
    WaitingRetryRow,
    WebhookRow,
)

if TYPE_CHECKING:
    from assethooks.store.delivery_log import LogEntry

BUCKET = 300  # seconds per delivery_stats row
_HOUR_BUCKETS = 3600 // BUCKET
_DAY_BUCKETS = 86400 // BUCKET


def bucket_start(moment: datetime) -> datetime:
    """The start of the five-minute bucket ``moment`` falls in."""
    seconds = int(moment.timestamp())
    return datetime.fromtimestamp(seconds - seconds % BUCKET, UTC)


# -- writing: with the log rows ---------------------------------------------------------------------------


def stats_rows(entries: Sequence[LogEntry], sqlite: bool) -> list[tuple[object, ...]]:
    """The ``delivery_stats`` increments of a batch of log entries, in a fixed order (so that two processes
    adding to the same rows lock them in the same order)."""
    sums: dict[tuple[int, int], list[float]] = {}
    for entry in entries:
        seconds = int(entry.created_at.timestamp())
        key = (entry.webhook_id, seconds - seconds % BUCKET)  # bucket_start, without a datetime per entry
        found = sums.get(key)
        if found is None:
            found = sums[key] = [0, 0, 0.0]
        found[0 if entry.success else 1] += 1
        found[2] += entry.duration_ms
    rows: list[tuple[object, ...]] = []
    for (webhook_id, start), (succeeded, failed, duration) in sorted(sums.items()):
        moment = datetime.fromtimestamp(start, UTC)
        rows.append(
            (webhook_id, sqlite_time(moment) if sqlite else moment, int(succeeded), int(failed), duration)
        )
    return rows


def stats_statement(mark: str) -> str:
    """Add one batch's counts to ``delivery_stats`` (driver parameters ``mark``)."""
    table = DeliveryStatsRow.__tablename__
    return (
        f"INSERT INTO {table} (webhook_id, bucket, succeeded, failed, duration_ms) "  # noqa: S608 (constants)
        f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark}) ON CONFLICT (webhook_id, bucket) DO UPDATE SET "
        f"succeeded = {table}.succeeded + excluded.succeeded, failed = {table}.failed + excluded.failed, "
        f"duration_ms = {table}.duration_ms + excluded.duration_ms"
    )


def waiting_rows(entries: Sequence[LogEntry], sqlite: bool) -> list[tuple[object, ...]]:
    """The ``waiting_retries`` rows of a batch, by delivery: its newest attempt here, waiting (it failed and
    its retry is due at a time) or settled (a success, a dead letter: kept as a tombstone, so that an older
    attempt logged later by another process cannot make it wait again). On equal attempt numbers (a
    scheduled retry and a re-send by hand) a success wins. A first attempt that succeeded cannot settle
    anything and is skipped: the common case costs nothing."""
    newest: dict[str, LogEntry] = {}
    for entry in entries:
        if entry.attempt > 1 or entry.next_attempt_at is not None:
            found = newest.get(entry.delivery_id)
            if found is None or _later(entry, found):
                newest[entry.delivery_id] = entry
    rows: list[tuple[object, ...]] = []
    for delivery_id, entry in sorted(newest.items()):
        due = entry.next_attempt_at
        at = entry.created_at
        rows.append(
            (
                delivery_id,
                entry.webhook_id,
                entry.attempt,
                due is not None,
                None if due is None else sqlite_time(due) if sqlite else due,
                sqlite_time(at) if sqlite else at,
            )
        )
    return rows


def _later(entry: LogEntry, than: LogEntry) -> bool:
    return entry.attempt > than.attempt or (entry.attempt == than.attempt and entry.next_attempt_at is None)


def waiting_statement(mark: str) -> str:
    """Note each delivery's newest attempt: waiting for its retry, or settled; an older attempt (or a failure
    of the same number) never overwrites a newer one."""
    table = WaitingRetryRow.__tablename__
    return (
        f"INSERT INTO {table} (delivery_id, webhook_id, attempt, waiting, next_attempt_at, logged_at) "  # noqa: S608 (constants)
        f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark}, {mark}) ON CONFLICT (delivery_id) DO UPDATE SET "
        "webhook_id = excluded.webhook_id, attempt = excluded.attempt, waiting = excluded.waiting, "
        "next_attempt_at = excluded.next_attempt_at, logged_at = excluded.logged_at "
        f"WHERE {table}.attempt < excluded.attempt "
        f"OR ({table}.attempt = excluded.attempt AND NOT excluded.waiting)"
    )


def purge_stats(engine: Engine, before: datetime) -> None:
    """With the log rows logged before ``before``: the buckets counting them, and the waiting-retry rows
    of attempts logged before it that settled their delivery or whose retry was due a day before it (a
    retry that late was made, or its webhook is gone)."""

    def run() -> None:
        waiting = WaitingRetryRow
        with engine.begin() as connection:
            connection.execute(delete(DeliveryStatsRow).where(DeliveryStatsRow.bucket < bucket_start(before)))
            connection.execute(
                delete(waiting).where(
                    waiting.logged_at < before,
                    ~waiting.waiting | (waiting.next_attempt_at < before - timedelta(days=1)),
                )
            )

    guarded(engine, run)


# -- reading ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """Attempts over a time window."""

    succeeded: int = 0
    failed: int = 0
    duration_ms: float = 0.0  # summed over the attempts

    @property
    def attempts(self) -> int:
        """Every attempt, successful or not."""
        return self.succeeded + self.failed

    @property
    def success_rate(self) -> float | None:
        """The share of successful attempts, ``None`` without attempts."""
        return self.succeeded / self.attempts if self.attempts else None

    @property
    def mean_ms(self) -> float | None:
        """The mean duration of an attempt, ``None`` without attempts."""
        return self.duration_ms / self.attempts if self.attempts else None


@dataclass(frozen=True, slots=True)
class LastAttempt:
    """The newest attempt of a webhook."""

    at: datetime
    success: bool
    status_code: int | None
    duration_ms: float
    error: str | None


@dataclass(frozen=True, slots=True)
class Hour:
    """Attempts in one clock hour (for the chart)."""

    start: datetime
    succeeded: int
    failed: int


@dataclass(frozen=True, slots=True)
class Health:
    """The health of one webhook at ``at``."""

    webhook_id: int
    at: datetime
    active: bool
    disabled_reason: str | None
    failing_since: datetime | None
    circuit_open_until: datetime | None
    circuit_changed_at: datetime | None
    last_hour: Window
    last_day: Window
    last_attempt: LastAttempt | None
    retrying: int  # deliveries whose newest attempt failed and that wait for their next one
    dead_letters: int  # pending in the dead-letter topic
    hours: tuple[Hour, ...] = ()  # the last 24 clock hours, oldest first, when asked for

    @property
    def circuit(self) -> str:
        """``closed``; ``open`` until ``circuit_open_until``; then ``half-open`` until a success closes it."""
        if self.circuit_open_until is None:
            return "closed"
        return "open" if self.circuit_open_until > self.at else "half-open"

    @property
    def state(self) -> str:
        """One word: ``disabled``, ``inactive``, ``circuit-open``, ``failing``, ``idle`` or ``ok``."""
        if not self.active:
            return "disabled" if self.disabled_reason else "inactive"
        if self.circuit != "closed":
            return "circuit-open"
        if self.failing_since is not None:
            return "failing"
        return "idle" if self.last_attempt is None else "ok"


def webhook_health(
    engine: Engine,
    *,
    now: datetime,
    webhook_ids: Sequence[int] | None = None,
    hours: bool = False,
) -> list[Health]:
    """The health of the webhooks ``webhook_ids`` (every webhook when ``None``), by id; ``hours`` adds the
    attempts per clock hour of the last 24."""

    def run() -> list[Health]:
        with Session(engine) as session:
            webhooks = select(WebhookRow).order_by(WebhookRow.id)
            if webhook_ids is not None:
                webhooks = webhooks.where(WebhookRow.id.in_(webhook_ids))
            rows = list(session.scalars(webhooks))
            ids = [row.id for row in rows]
            if not ids:
                return []
            hour, day = _windows(session, ids, now)
            last = _last_attempts(session, ids)
            retrying = _retrying(session, ids)
            dead = _dead_letters(session, ids)
            by_hour = _hours(session, ids[0], now) if hours and len(ids) == 1 else ()
        return [
            Health(
                webhook_id=row.id,
                at=now,
                active=row.active,
                disabled_reason=row.disabled_reason,
                failing_since=row.failing_since,
                circuit_open_until=row.circuit_open_until,
                circuit_changed_at=row.circuit_changed_at,
                last_hour=hour.get(row.id, Window()),
                last_day=day.get(row.id, Window()),
                last_attempt=last.get(row.id),
                retrying=retrying.get(row.id, 0),
                dead_letters=dead.get(row.id, 0),
                hours=by_hour,
            )
            for row in rows
        ]

    return guarded(engine, run)


def _windows(session: Session, ids: list[int], now: datetime) -> tuple[dict[int, Window], dict[int, Window]]:
    stats = DeliveryStatsRow
    current = bucket_start(now)
    hour_from = current - timedelta(seconds=BUCKET * (_HOUR_BUCKETS - 1))
    day_from = current - timedelta(seconds=BUCKET * (_DAY_BUCKETS - 1))
    in_hour = stats.bucket >= hour_from
    query = (
        select(
            stats.webhook_id,
            func.sum(stats.succeeded),
            func.sum(stats.failed),
            func.sum(stats.duration_ms),
            func.sum(_if(in_hour, stats.succeeded)),
            func.sum(_if(in_hour, stats.failed)),
            func.sum(_if(in_hour, stats.duration_ms)),
        )
        .where(stats.webhook_id.in_(ids), stats.bucket >= day_from)
        .group_by(stats.webhook_id)
    )
    hour, day = {}, {}
    for webhook_id, succeeded, failed, duration, hour_ok, hour_failed, hour_duration in session.execute(
        query
    ):
        day[webhook_id] = Window(int(succeeded), int(failed), float(duration))
        hour[webhook_id] = Window(int(hour_ok), int(hour_failed), float(hour_duration))
    return hour, day


def _if(condition: ColumnElement[bool], value: Any) -> ColumnElement[Any]:
    return case((condition, value), else_=0)


def _last_attempts(session: Session, ids: list[int]) -> dict[int, LastAttempt]:
    log = DeliveryLogRow
    newest = (
        select(log.id)
        .where(log.webhook_id == WebhookRow.id)
        .order_by(log.created_at.desc(), log.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    chosen = select(newest).where(WebhookRow.id.in_(ids))
    query = select(log).where(log.id.in_(chosen))
    return {
        row.webhook_id: LastAttempt(row.created_at, row.success, row.status_code, row.duration_ms, row.error)
        for row in session.scalars(query)
    }


def _retrying(session: Session, ids: list[int]) -> dict[int, int]:
    waiting = WaitingRetryRow
    dead = select(DeadLetterRow.id).where(DeadLetterRow.delivery_id == waiting.delivery_id).exists()
    query = (
        select(waiting.webhook_id, func.count())
        .where(waiting.webhook_id.in_(ids), waiting.waiting, ~dead)
        .group_by(waiting.webhook_id)
    )
    return {int(webhook_id): int(count) for webhook_id, count in session.execute(query)}


def _dead_letters(session: Session, ids: list[int]) -> dict[int, int]:
    dead = DeadLetterRow
    query = (
        select(dead.webhook_id, func.count())
        .where(dead.webhook_id.in_(ids), dead.status == "pending")
        .group_by(dead.webhook_id)
    )
    return {webhook_id: count for webhook_id, count in session.execute(query) if webhook_id is not None}


def _hours(session: Session, webhook_id: int, now: datetime) -> tuple[Hour, ...]:
    stats = DeliveryStatsRow
    this_hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    starts = [this_hour - timedelta(hours=back) for back in range(23, -1, -1)]
    counts = {start: [0, 0] for start in starts}
    query = select(stats.bucket, stats.succeeded, stats.failed).where(
        stats.webhook_id == webhook_id, stats.bucket >= starts[0]
    )
    for bucket, succeeded, failed in session.execute(query):
        found = counts.get(bucket.replace(minute=0, second=0, microsecond=0))
        if found is not None:
            found[0] += succeeded
            found[1] += failed
    return tuple(Hour(start, *counts[start]) for start in starts)
