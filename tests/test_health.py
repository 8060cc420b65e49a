"""Endpoint health from the store, on SQLite and PostgreSQL: the counts the delivery log's writer keeps
(``delivery_stats``) and those the migration fills from an existing log agree with the log itself; the
newest attempt, the deliveries waiting for a retry and the pending dead letters are right; and over a log of
1,000,000 rows the health of 100 webhooks is computed from the rollup (the time it took is printed)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from assethooks.operator.health import health, health_json, summary
from assethooks.store.db import make_engine
from assethooks.store.delivery_log import LogEntry, insert_entries
from assethooks.store.health import bucket_start, stats_rows
from assethooks.store.migrate import upgrade
from assethooks.store.models import DeadLetterRow, DeliveryLogRow, DeliveryStatsRow
from assethooks.store.webhooks import WebhookStore
from schemas.webhooks import validate_webhook

NOW = datetime(2026, 11, 30, 12, 2, 30, tzinfo=UTC)


def _webhooks(engine: Engine, count: int) -> None:
    store = WebhookStore(engine)
    for number in range(count):
        store.create(validate_webhook(name=f"w{number}", url=f"https://example.com/{number}", events=None))


def entry(
    webhook_id: int, delivery: str, attempt: int, ok: bool, at: datetime, ms: float = 10.0, retry: bool = True
) -> LogEntry:
    """An attempt; a failed one has its retry due a minute later unless not ``retry`` (dead-lettered)."""
    return LogEntry(
        webhook_id, "asset.created", "1", delivery, attempt, ok, 200 if ok else 500, ms,
        None if ok else "HTTP 500", None, "events", 0, 1, at,
        None if ok or not retry else at + timedelta(minutes=1),
    )  # fmt: skip


def test_health_counts_waiting_and_dead_letters(store_url: str) -> None:
    engine = make_engine(store_url)
    upgrade(engine)
    _webhooks(engine, 3)
    entries = [
        # webhook 1: 3 successes in the last hour, 1 failure 3 hours ago (since retried with success)
        entry(1, "a", 1, True, NOW - timedelta(minutes=1), ms=20),
        entry(1, "b", 1, True, NOW - timedelta(minutes=30)),
        entry(1, "c", 1, False, NOW - timedelta(hours=3)),
        entry(1, "c", 2, True, NOW - timedelta(minutes=50), ms=30),
        entry(1, "old", 1, True, NOW - timedelta(hours=25)),  # beyond the day
        # webhook 2: one delivery failed twice and waits, one failed and is dead, one failed then sent by hand
        entry(2, "x", 1, False, NOW - timedelta(minutes=20)),
        entry(2, "x", 2, False, NOW - timedelta(minutes=10)),
        entry(2, "y", 1, False, NOW - timedelta(hours=2), retry=False),
        entry(2, "z", 1, False, NOW - timedelta(hours=2)),
        entry(2, "z", 2, True, NOW - timedelta(hours=1, minutes=30)),
    ]
    insert_entries(engine, entries[:4])  # two batches: the counts add up
    insert_entries(engine, entries[4:])
    with Session(engine) as session, session.begin():
        session.add(
            DeadLetterRow(
                topic="dlq", partition=0, offset=1, kind="attempts-exhausted", reason="HTTP 500",
                webhook_id=2, event="asset.created", asset_id="1", delivery_id="y", attempts=3,
                dead_at=NOW - timedelta(hours=1), status="pending", resolved_at=None,
            )
        )  # fmt: skip
    WebhookStore(engine).record_health([], {2: NOW - timedelta(hours=2, minutes=5)})  # as the dispatcher does
    one, two, three = health(engine, now=NOW)
    hours = health(engine, [1], hours=True, now=NOW)[0].hours

    assert (one.last_hour.succeeded, one.last_hour.failed) == (3, 0)
    assert (one.last_day.succeeded, one.last_day.failed) == (3, 1)
    assert one.last_hour.mean_ms == pytest.approx(20.0)  # (20 + 10 + 30) / 3
    assert one.last_attempt is not None
    assert one.last_attempt.at == NOW - timedelta(minutes=1)
    assert (one.retrying, one.dead_letters, one.state, summary(one)) == (0, 0, "ok", "ok")
    assert (two.last_day.succeeded, two.last_day.failed, two.retrying, two.dead_letters) == (1, 4, 1, 1)
    assert two.last_attempt is not None
    assert not two.last_attempt.success
    assert summary(two) == "failing since 2026-11-30 09:57:30Z (2h5m), 1 retrying, 1 dead"
    assert (three.state, three.last_attempt, three.last_day.attempts) == ("idle", None, 0)
    assert len(hours) == 24
    assert hours[-1].start == NOW.replace(minute=0, second=0)
    assert [(hour.succeeded, hour.failed) for hour in hours if hour.succeeded or hour.failed] == [
        (0, 1),  # 09:02 -> the 09:00 hour
        (2, 0),  # 11:12 and 11:32
        (1, 0),  # 12:01
    ]
    assert health_json(one)["last_day"] == {
        "attempts": 4, "succeeded": 3, "failed": 1, "success_rate": 0.75, "mean_ms": 17.5,
    }  # fmt: skip
    engine.dispose()


def test_the_migration_fills_the_rollup_as_the_writer_does(store_url: str) -> None:
    """Rows logged before the rollup existed (revision 0007) are counted by the migration exactly as the
    writer counts new ones."""
    engine = make_engine(store_url)
    upgrade(engine, "0007")
    now = datetime.now(UTC)
    entries = [
        entry(
            1 + number % 3, f"d{number}", 1, number % 4 != 0, now - timedelta(minutes=7 * number), ms=number
        )
        for number in range(300)  # 35 hours: the migration fills only the last day
    ]
    sqlite = engine.dialect.name == "sqlite"
    names = [name for name in LogEntry.__dataclass_fields__ if name != "next_attempt_at"]  # not at 0007
    marks = ", ".join(["?" if sqlite else "%s"] * len(names))
    with engine.begin() as connection:
        connection.exec_driver_sql(
            f"INSERT INTO delivery_logs ({', '.join(names)}) VALUES ({marks})",
            [tuple(getattr(item, name) for name in names) for item in entries],
        )
    upgrade(engine)
    day = now - timedelta(days=1)
    recent = [item for item in entries if item.created_at >= day]
    expected = {
        (webhook_id, bucket): (ok, failed, ms)
        for webhook_id, bucket, ok, failed, ms in stats_rows(recent, False)
    }
    with Session(engine) as session:
        found = {
            (row.webhook_id, row.bucket): (row.succeeded, row.failed, row.duration_ms)
            for row in session.scalars(select(DeliveryStatsRow))
        }
    # the bucket holding the day's start may count only its later rows on either side: leave it out
    first = bucket_start(min(item.created_at for item in recent))
    assert {key: value for key, value in found.items() if key[1] != first} == {
        key: value for key, value in expected.items() if key[1] != first
    }
    engine.dispose()


def _million(engine: Engine, now: datetime) -> None:
    """1,000,000 attempts over the last 23 hours, spread over 100 webhooks; every 20th failed."""
    if engine.dialect.name == "postgresql":
        series = "SELECT i FROM generate_series(0, 999999) AS i"
        moment = "CAST(:now AS timestamptz) - make_interval(secs => i * 0.0828)"
        text_of = "CAST(i AS text)"
    else:
        series = (
            "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < 999999) SELECT i FROM s"
        )
        moment = "strftime('%Y-%m-%d %H:%M:%f000', :now, '-' || (i * 0.0828) || ' seconds')"
        text_of = "CAST(i AS TEXT)"
    statement = (
        "INSERT INTO delivery_logs (webhook_id, event, asset_id, delivery_id, attempt, success, status_code, "
        "duration_ms, error, response_body, source_topic, source_partition, source_offset, created_at) "
        f"SELECT i % 100 + 1, 'asset.created', {text_of}, 'd' || {text_of}, 1, i % 20 <> 0, "
        "CASE WHEN i % 20 <> 0 THEN 200 ELSE 500 END, 10 + i % 7, "
        "CASE WHEN i % 20 <> 0 THEN NULL ELSE 'HTTP 500' END, "
        f"NULL, 'events', i % 6, i, {moment} FROM ({series}) AS numbers"
    )
    parameter = now.replace(tzinfo=None).isoformat(" ") if engine.dialect.name == "sqlite" else now
    with engine.begin() as connection:
        connection.execute(text(statement), {"now": parameter})


def test_health_of_100_webhooks_over_a_million_rows(store_url: str) -> None:
    engine = make_engine(store_url)
    upgrade(engine, "0007")
    now = datetime.now(UTC).replace(microsecond=0)
    _million(engine, now)
    upgrade(engine)  # the migration fills the rollup from the log
    _webhooks(engine, 100)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(DeliveryLogRow)) == 1_000_000
    health(engine, now=now)  # warm the connection pool and the caches
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        found = health(engine, now=now)
        timings.append((time.perf_counter() - started) * 1000)
    print(f"\nhealth of 100 webhooks over 1,000,000 log rows on {engine.dialect.name}: "
          f"{min(timings):.0f} ms best, {sorted(timings)[2]:.0f} ms median of 5")  # fmt: skip
    assert len(found) == 100
    assert sum(each.last_day.attempts for each in found) == 1_000_000
    assert sum(each.last_day.failed for each in found) == 50_000
    assert sum(each.retrying for each in found) == 50_000  # no failed delivery was attempted again
    single = health(engine, [1], hours=True, now=now)[0]
    assert sum(hour.succeeded + hour.failed for hour in single.hours) == 10_000
    engine.dispose()


def test_waiting_retries_follow_the_newest_attempt_whatever_the_order(store_url: str) -> None:
    """Two processes may log attempts of one delivery in any order, and a scheduled retry and a re-send by
    hand may share an attempt number: the newest attempt decides, a success winning a tie; a delivery
    whose retry the retrier dead-lettered stops waiting once its dead letter is indexed."""
    engine = make_engine(store_url)
    upgrade(engine)
    _webhooks(engine, 1)
    at = NOW - timedelta(minutes=5)
    insert_entries(engine, [entry(1, "tie", 2, False, at), entry(1, "tie", 2, True, at)])  # one batch
    insert_entries(engine, [entry(1, "late", 3, True, at)])
    insert_entries(engine, [entry(1, "late", 2, False, at)])  # an older failure, logged after
    insert_entries(engine, [entry(1, "hand", 2, True, at)])
    insert_entries(engine, [entry(1, "hand", 2, False, at)])  # the retry of the same number, failed
    insert_entries(engine, [entry(1, "waits", 1, False, at), entry(1, "gone", 1, False, at)])
    assert health(engine, now=NOW)[0].retrying == 2  # "waits" and "gone"
    with Session(engine) as session, session.begin():
        session.add(
            DeadLetterRow(
                topic="dlq", partition=0, offset=2, kind="undeliverable", reason="webhook 1 was deleted",
                webhook_id=1, event="asset.created", asset_id="1", delivery_id="gone", attempts=1,
                dead_at=NOW, status="pending", resolved_at=None,
            )
        )  # fmt: skip
    assert health(engine, now=NOW)[0].retrying == 1
    engine.dispose()
