"""The delivery log as the sender's ledger, against the real broker, SQLite and a receiver on loopback: a
record read again sends only what the log holds no attempt of; a clean stop re-sends nothing; a retry of a
delivery made meanwhile is dropped; explicit re-sends still send."""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from assethooks.store.delivery_log import LogQuery, query_attempts
from assethooks.store.webhooks import WebhookStore
from producers.events import EventPublisher
from schemas.webhooks import validate_webhook
from tests.conftest import TestEnv
from tests.support import Answer, Receiver, asset_event, cli, committed_to_end, service, wait_until


def publish(env: TestEnv, assets: range) -> None:
    with EventPublisher(env.settings()) as publisher:
        for asset in assets:
            assert publisher.publish(asset_event(asset))


def add_webhook(engine: Engine, receiver: Receiver, path: str = "/hook") -> int:
    return WebhookStore(engine).create(validate_webhook(name="hook", url=receiver.url(path), events=None)).id


def received(receiver: Receiver, path: str = "/hook") -> Counter[str]:
    """Requests per delivery id."""
    return Counter(request.header("X-Asset-Webhook-Delivery") or "" for request in receiver.requests(path))


def skips_told(output: str) -> int:
    """The deliveries a process said it did not send again."""
    return sum(int(count) for count in re.findall(r"skipped (\d+) of \d+ deliveries", output))


def all_read(env: TestEnv) -> bool:
    return committed_to_end(env["kafka_bootstrap"], env["dispatcher_group"], env["source_topic"])


def test_records_read_again_send_nothing_the_log_holds(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    add_webhook(engine, receiver)
    publish(env, range(60))
    with service("dispatcher", env.values, tmp_path / "first.log"):
        wait_until(lambda: len(received(receiver)) == 60, what="60 deliveries")
        wait_until(lambda: all_read(env), what="every offset committed")
    # The group goes back to the start, as after a crash before any commit: every record is read again.
    rewound = cli("replay", "--rewind-group", "--to", "2000-01-01T00:00:00Z", env=env.values)
    assert rewound.code == 0, rewound.err
    publish(env, range(60, 70))  # and ten new ones
    with service("dispatcher", env.values, tmp_path / "second.log") as again:
        wait_until(lambda: len(received(receiver)) == 70, what="the ten new deliveries")
        wait_until(lambda: all_read(env), what="every offset committed again")
        wait_until(lambda: skips_told(again.output()) == 60, what="the skips to be told")
    assert set(received(receiver).values()) == {1}  # nothing was sent twice


def test_an_attempt_whose_log_entry_was_lost_is_sent_again(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    """The other side: the request went out, the process died before its log entry was committed."""
    add_webhook(engine, receiver)
    publish(env, range(20))
    database = env["database_url"].removeprefix("sqlite:///")
    blocker = sqlite3.connect(database, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # the delivery log cannot be written
    try:
        with service("dispatcher", env.values, tmp_path / "first.log") as first:
            wait_until(lambda: len(received(receiver)) == 20, what="20 deliveries")
            first.kill()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert query_attempts(engine, LogQuery(limit=None)) == []
    with service("dispatcher", env.values, tmp_path / "second.log"):
        wait_until(lambda: all_read(env), what="every offset committed")
    assert set(received(receiver).values()) == {2}  # each sent again: at least once, never lost
    assert len(query_attempts(engine, LogQuery(limit=None))) == 20


def test_a_stop_in_the_middle_of_a_drain_sends_nothing_twice(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    add_webhook(engine, receiver)
    receiver.plan("/hook", then=(0.01, 200))
    publish(env, range(300))
    env = env.with_(max_in_flight=20)  # the stop finishes 20 records at most, not the whole backlog
    with service("dispatcher", env.values, tmp_path / "first.log") as first:
        wait_until(lambda: len(received(receiver)) >= 50, what="a sixth of the drain")
        assert first.stop() == 0  # SIGTERM: the work in flight is finished and committed
    assert len(received(receiver)) < 300, "the drain ended before the stop: nothing was tested"
    with service("dispatcher", env.values, tmp_path / "second.log"):
        wait_until(lambda: len(received(receiver)) == 300, timeout=60, what="the rest of the drain")
        wait_until(lambda: all_read(env), what="every offset committed")
    duplicates = {delivery: count for delivery, count in received(receiver).items() if count > 1}
    assert duplicates == {}


def test_a_scheduled_retry_of_a_delivery_sent_by_hand_meanwhile_is_dropped(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    add_webhook(engine, receiver)
    receiver.plan("/hook", Answer(429, {"Retry-After": "6"}), then=200)
    publish(env, range(1))
    patient = env.with_(retry_schedule="1s", retry_after_max="1h")
    with service("all", patient.values, tmp_path / "run.log") as running:
        receiver.wait_for(1, "/hook")
        failed = wait_until(lambda: query_attempts(engine, LogQuery(limit=None)), what="the failure logged")
        resent = cli("logs", "retry", str(failed[0].id), env=patient.values)
        assert resent.code == 0, resent.err
        receiver.wait_for(2, "/hook")  # the re-send by hand arrived
        wait_until(
            lambda: "dropped the retry of delivery" in running.output(),
            timeout=30,
            what="the scheduled retry to come due and be dropped",
        )
    assert [request.status for request in receiver.requests("/hook")] == [429, 200]


def test_explicit_re_sends_still_send(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    add_webhook(engine, receiver)
    publish(env, range(5))
    with service("all", env.values, tmp_path / "run.log"):
        wait_until(lambda: len(received(receiver)) == 5, what="5 deliveries")
        replayed = cli("replay", "--from", "2000-01-01T00:00:00Z", env=env.values)
        assert replayed.code == 0, replayed.err
        wait_until(lambda: set(received(receiver).values()) == {2}, what="each delivered again")
    attempts: dict[str, Any] = {}
    for entry in query_attempts(engine, LogQuery(limit=None)):
        attempts.setdefault(entry.delivery_id, []).append(entry.attempt)
    assert all(sorted(numbers) == [1, 2] for numbers in attempts.values()), attempts
