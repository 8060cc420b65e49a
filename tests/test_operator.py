"""Operator and data-team tools: test webhook, delivery logs, dead-letter drain, topic replay."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import Producer
from sqlalchemy import Engine

from assethooks.cli import main
from assethooks.kafka import ensure_topics, source_of
from assethooks.signing import sign
from assethooks.store.db import make_engine
from assethooks.store.delivery_log import LogEntry, insert_entries, recent_entries
from assethooks.store.migrate import upgrade
from assethooks.store.webhooks import WebhookStore
from schemas.tasks import (
    TASK_HEADER,
    AttemptRecord,
    DeadLetter,
    DeadLetterKind,
    DeliveryTask,
    SourceRef,
    dead_letter_headers,
    delivery_id_for,
    header_value,
)
from schemas.webhooks import Webhook, validate_webhook
from tests.conftest import TestEnv
from tests.support import (
    Receiver,
    cli,
    committed_offsets,
    committed_to_end,
    read_topic,
    records_in,
    service,
    wait_until,
)

NOW = datetime.now(UTC)


@pytest.fixture
def engine(env: TestEnv) -> Iterator[Engine]:
    store = make_engine(env["database_url"])
    upgrade(store)
    yield store
    store.dispose()


@pytest.fixture
def kafka_engine(env: TestEnv, engine: Engine) -> Engine:
    """The store, with the test's topics created."""
    ensure_topics(env.settings())
    return engine


def add_webhook(engine: Engine, **fields: Any) -> Webhook:
    return WebhookStore(engine).create(validate_webhook(**{"events": None, **fields}))


def event(name: str, asset_id: int, **data: Any) -> bytes:
    return json.dumps(
        {
            "event": name,
            "timestamp": "2026-11-28T12:00:00+00:00",
            "source": "perfex_assets_module",
            "asset_id": asset_id,
            "asset": {"id": asset_id},
            "data": data,
        }
    ).encode()


def produce(env: TestEnv, records: Sequence[tuple[bytes, datetime | None]]) -> None:
    """Produce records with the given timestamps (CreateTime), keyed by asset id."""
    producer = Producer({"bootstrap.servers": env["kafka_bootstrap"]})
    for body, moment in records:
        key = str(json.loads(body)["asset_id"]).encode()
        millis = int(moment.timestamp() * 1000) if moment else 0
        producer.produce(env["source_topic"], value=body, key=key, timestamp=millis)
    assert producer.flush(30) == 0


def json_out(*args: str, env: TestEnv) -> Any:
    result = cli(*args, "--json", env=env.values)
    assert result.code == 0, result.err
    return json.loads(result.out)


def attempts_out(*filters: str, env: TestEnv) -> list[dict[str, Any]]:
    """``logs --json``: the attempts listed."""
    listed: list[dict[str, Any]] = json_out("logs", *filters, env=env)["attempts"]
    return listed


def entries_out(*args: str, env: TestEnv) -> list[dict[str, Any]]:
    """``dlq list --json``: the entries listed."""
    listed: list[dict[str, Any]] = json_out("dlq", "list", *args, env=env)["entries"]
    return listed


# -- the test webhook ---------------------------------------------------------------------------------


def test_the_test_webhook_reaches_a_verifying_receiver_and_is_logged(
    env: TestEnv, engine: Engine, receiver: Receiver
) -> None:
    hook = add_webhook(
        engine, name="ERP", url=receiver.url("/erp"), secret="s3", active=False, headers={"X-K": "v"}
    )
    result = cli("webhooks", "test", str(hook.id), env=env.values)
    assert result.code == 0, result.err
    assert result.out.startswith(f"HTTP 200 from {receiver.url('/erp')} in ")
    assert "answer 200" in result.out
    (request,) = receiver.requests("/erp")
    assert request.header("X-Asset-Webhook-Event") == "webhook.test"
    assert request.header("X-Asset-Webhook-Signature") == sign("s3", request.body)
    assert request.header("X-K") == "v"
    payload = json.loads(request.body)
    assert set(payload) == {"event", "timestamp", "source", "asset_id", "asset", "data"}
    assert payload["event"] == "webhook.test"
    (logged,) = attempts_out("--event", "webhook.test", env=env)
    assert (logged["webhook_id"], logged["success"], logged["status_code"]) == (hook.id, True, 200)
    assert logged["delivery_id"] == request.header("X-Asset-Webhook-Delivery")


def test_the_test_webhook_against_a_closed_port_fails_with_a_clear_message(
    env: TestEnv, engine: Engine, receiver: Receiver
) -> None:
    port = receiver.port
    receiver.stop()
    hook = add_webhook(engine, name="Closed", url=f"http://127.0.0.1:{port}/x")
    result = cli("webhooks", "test", str(hook.id), env=env.values)
    assert result.code == 5
    assert result.out.startswith("no answer from")
    (line,) = result.err.splitlines()
    assert line.startswith(
        f"Error: test delivery to webhook {hook.id} failed: cannot connect to 127.0.0.1:{port}"
    )
    (logged,) = recent_entries(engine)
    assert not logged.success
    assert logged.error is not None
    assert logged.error.startswith("cannot connect")


def test_the_test_webhook_refuses_a_private_destination_unless_allowed(
    env: TestEnv, engine: Engine, receiver: Receiver
) -> None:
    hook = add_webhook(engine, name="Inside", url=receiver.url("/inside"))
    refused = cli("webhooks", "test", str(hook.id), env=env.with_(allowed_cidrs="").values)
    assert refused.code == 5
    assert "not a public address" in refused.err
    assert receiver.requests() == []


# -- delivery logs ------------------------------------------------------------------------------------


def entry(
    webhook_id: int, event: str, asset: str, success: bool, age: timedelta, attempt: int = 1
) -> LogEntry:
    return LogEntry(
        webhook_id=webhook_id,
        event=event,
        asset_id=asset,
        delivery_id=f"d-{webhook_id}-{event}-{asset}",
        attempt=attempt,
        success=success,
        status_code=200 if success else 500,
        duration_ms=12.5,
        error=None if success else "HTTP 500",
        response_body="ok" if success else "boom",
        source_topic="asset-events",
        source_partition=0,
        source_offset=1,
        created_at=NOW - age,
    )


def test_log_filters_return_exactly_the_matching_attempts(env: TestEnv, store_url: str) -> None:
    store = make_engine(store_url)
    upgrade(store)
    hours = timedelta(hours=1)
    insert_entries(
        store,
        [
            entry(1, "asset.created", "10", True, 5 * hours),
            entry(1, "asset.created", "11", False, 3 * hours),
            entry(1, "asset.lost", "10", False, 1 * hours),
            entry(2, "asset.created", "10", False, 1 * hours),
            entry(2, "asset.lost", "12", True, 10 * hours),
        ],
    )
    store.dispose()
    on = env.with_(database_url=store_url)

    def ids(*filters: str) -> list[tuple[int, str, str | None, bool]]:
        rows = attempts_out(*filters, env=on)
        return [(row["webhook_id"], row["event"], row["asset_id"], row["success"]) for row in rows]

    assert len(ids()) == 5
    assert ids("--webhook", "1", "--status", "failed") == [
        (1, "asset.lost", "10", False),
        (1, "asset.created", "11", False),
    ]
    assert ids("--event", "asset.lost") == [(1, "asset.lost", "10", False), (2, "asset.lost", "12", True)]
    assert ids("--asset", "10", "--status", "ok") == [(1, "asset.created", "10", True)]
    assert ids("--since", "4h") == [
        (2, "asset.created", "10", False),
        (1, "asset.lost", "10", False),
        (1, "asset.created", "11", False),
    ]
    assert ids("--since", "4h", "--until", "2h") == [(1, "asset.created", "11", False)]
    since = (NOW - 6 * hours).isoformat()
    assert ids("--since", since, "--webhook", "2") == [(2, "asset.created", "10", False)]
    assert ids("--limit", "2") == [(2, "asset.created", "10", False), (1, "asset.lost", "10", False)]
    table = cli("logs", "--webhook", "2", env=on.values)
    assert table.out.splitlines()[0].split() == [
        "ID",
        "TIME",
        "WEBHOOK",
        "EVENT",
        "ASSET",
        "ATTEMPT",
        "CODE",
        "RESULT",
        "MS",
        "ERROR",
    ]
    assert table.out.splitlines()[-1] == "2 attempts"
    first = attempts_out("--webhook", "2", "--status", "ok", env=on)[0]
    shown = cli("logs", "show", str(first["id"]), env=on.values)
    assert "response:\nok" in shown.out
    bad = cli("logs", "--since", "yesterday-ish", env=on.values)
    assert bad.code == 2
    assert (
        bad.err.strip()
        == "Error: not a time: 'yesterday-ish' (use an ISO 8601 time or a duration ago like 2h)"
    )


def test_purge_removes_only_entries_older_than_the_cutoff(env: TestEnv, store_url: str) -> None:
    store = make_engine(store_url)
    upgrade(store)
    days = timedelta(days=1)
    insert_entries(store, [entry(1, "asset.created", str(age), True, age * days) for age in (40, 31, 29, 1)])
    on = env.with_(database_url=store_url)
    result = cli("logs", "purge", "--older-than", "30d", env=on.values)
    assert result.code == 0, result.err
    assert result.out.startswith("purged 2 entries older than 30d")
    assert sorted(int(kept.asset_id or 0) for kept in recent_entries(store)) == [1, 29]
    everything = cli("logs", "purge", "--older-than", "0s", env=on.values)
    assert everything.out.startswith("purged 2 entries older than 0s ("), everything.out
    assert cli("logs", "purge", "--older-than", "0s", env=on.values).out.startswith("purged 0 entries")
    store.dispose()


# -- re-sending and the dead-letter topic --------------------------------------------------------------


def test_logs_retry_redelivers_a_failed_delivery_once_the_receiver_is_healthy(
    env: TestEnv, kafka_engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    hook = add_webhook(kafka_engine, name="Down", url=receiver.url("/down"))
    receiver.plan("/down", then=500)
    produce(env, [(event("asset.lost", 8), None)])
    settings = env.with_(retry_schedule="1s")
    with service("all", settings.values, tmp_path / "run.log"):
        read_topic(env["kafka_bootstrap"], env["dlq_topic"], count=1)  # both attempts failed
        receiver.plan("/down", then=200)
        result = cli(
            "logs",
            "retry",
            "--webhook",
            str(hook.id),
            "--status",
            "failed",
            "--since",
            "1h",
            env=settings.values,
        )
        assert result.code == 0, result.err
        assert result.out.strip().splitlines()[-1] == "queued 1 delivery for another attempt, skipped 0"
        requests = receiver.wait_for(3, "/down")
        wait_until(
            lambda: any(logged.success for logged in recent_entries(kafka_engine)), what="the logged success"
        )
    assert [request.header("X-Asset-Webhook-Attempt") for request in requests] == ["1", "2", "3"]
    assert len({request.header("X-Asset-Webhook-Delivery") for request in requests}) == 1
    again = cli("logs", "retry", "--webhook", str(hook.id), "--since", "1h", env=settings.values)
    assert "queued 0 deliveries" in again.out


def test_dead_letters_are_replayed_once_and_filtered_replays_leave_the_others_pending(
    env: TestEnv, kafka_engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    erp = add_webhook(kafka_engine, name="ERP", url=receiver.url("/erp"))
    crm = add_webhook(kafka_engine, name="CRM", url=receiver.url("/crm"))
    receiver.plan("/erp", then=503)
    receiver.plan("/crm", then=503)
    produce(env, [(event("asset.checked_out", asset), None) for asset in range(1, 5)])
    settings = env.with_(retry_schedule="1s")
    with service("all", settings.values, tmp_path / "run.log"):
        read_topic(env["kafka_bootstrap"], env["dlq_topic"], count=8)  # the outage exhausted every retry
        pending = entries_out(env=settings)
        assert len(pending) == 8
        assert {row["kind"] for row in pending} == {"attempts-exhausted"}
        assert all(
            row["attempts"] == 2 and row["reason"] == "2 attempts failed, last: HTTP 503" for row in pending
        )

        shown = cli("dlq", "show", str(pending[0]["id"]), env=settings.values)
        assert "attempts:" in shown.out
        assert '"event": "asset.checked_out"' in shown.out

        dry = cli("dlq", "replay", "--webhook", str(erp.id), "--dry-run", env=settings.values)
        assert dry.out.strip().splitlines()[-1] == "would replay 4 entries (dry run: nothing sent)"

        receiver.plan("/erp", then=200)  # the endpoint is back
        replayed = cli("dlq", "replay", "--webhook", str(erp.id), env=settings.values)
        assert replayed.code == 0, replayed.err
        assert replayed.out.strip().splitlines()[-1] == "replayed 4 entries, 0 missing from the topic"
        wait_until(
            lambda: (
                len([r for r in receiver.requests("/erp") if r.header("X-Asset-Webhook-Attempt") == "3"]) == 4
            )
        )

        second = cli("dlq", "replay", "--webhook", str(erp.id), env=settings.values)
        assert second.out.strip().splitlines()[-1] == "replayed 0 entries, 0 missing from the topic"
        retry_topic = f"{env['retry_topic_prefix']}.1s"
        wait_until(lambda: committed_to_end(env["kafka_bootstrap"], env["retrier_group"], retry_topic))

    erp_calls = receiver.requests("/erp")
    assert len(erp_calls) == 12  # 4 deliveries x (2 failed attempts + 1 replayed)
    dead_ids = {row["delivery_id"] for row in pending if row["webhook_id"] == erp.id}
    assert {
        r.header("X-Asset-Webhook-Delivery") for r in erp_calls if r.header("X-Asset-Webhook-Attempt") == "3"
    } == dead_ids
    assert len(receiver.requests("/crm")) == 8  # untouched
    still = entries_out(env=settings)
    assert {row["webhook_id"] for row in still} == {crm.id}
    assert len(still) == 4

    refused = cli("dlq", "purge", "--webhook", str(crm.id), env=settings.values, stdin="n\n")
    assert refused.code == 1
    assert len(entries_out(env=settings)) == 4
    purged = cli("dlq", "purge", "--webhook", str(crm.id), "--yes", env=settings.values)
    assert purged.out.strip() == "purged 4 entries"
    assert entries_out(env=settings) == []
    assert len(entries_out("--status", "all", env=settings)) == 8
    assert cli("dlq", "purge", "--all", "--yes", env=settings.values).out.strip() == "purged 0 entries"
    nothing = cli("dlq", "replay", env=settings.values)
    assert nothing.code == 2
    assert nothing.err.strip() == "Error: choose entries: their ids, filters such as --webhook, or --all"


# -- replay for data teams -----------------------------------------------------------------------------


def committed(env: TestEnv) -> list[int]:
    offsets = committed_offsets(env["kafka_bootstrap"], env["dispatcher_group"], env["source_topic"])
    return [offsets[partition][0] for partition in sorted(offsets)]


def test_replaying_a_window_to_a_new_webhook_delivers_exactly_its_matching_events(
    env: TestEnv, kafka_engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    add_webhook(kafka_engine, name="Live", url=receiver.url("/live"))
    hour = timedelta(hours=1)
    history = [
        (event("asset.created", 1, n=1), NOW - 3 * hour),
        (event("asset.created", 2, n=2), NOW - 2 * hour + timedelta(minutes=1)),
        (event("asset.updated", 2, n=3), NOW - 1.5 * hour),
        (event("asset.created", 4, n=4), NOW - 1.2 * hour),
        (event("asset.created", 5, n=5), NOW - hour + timedelta(minutes=1)),
        (event("asset.created", 6, n=6), NOW),
    ]
    produce(env, history)
    window = ["--from", (NOW - 2 * hour).isoformat(), "--to", (NOW - hour).isoformat()]
    with service("all", env.values, tmp_path / "run.log"):
        receiver.wait_for(6, "/live")
        wait_until(
            lambda: committed_to_end(env["kafka_bootstrap"], env["dispatcher_group"], env["source_topic"])
        )
        position = committed(env)
        late = add_webhook(kafka_engine, name="Late", url=receiver.url("/late"), events=["asset.created"])

        dry = cli("replay", *window, "--webhook", str(late.id), "--dry-run", env=env.values)
        assert dry.code == 0, dry.err
        assert (
            dry.out.strip().splitlines()[-1]
            == "read 3 records (0 invalid), 3 events matched; would queue 2 deliveries"
        )

        result = cli("replay", *window, "--webhook", str(late.id), env=env.values)
        assert result.code == 0, result.err
        assert (
            result.out.strip().splitlines()[-1]
            == "read 3 records (0 invalid), 3 events matched; queued 2 deliveries"
        )
        got = receiver.wait_for(2, "/late")
        retry_topic = f"{env['retry_topic_prefix']}.1s"
        wait_until(lambda: committed_to_end(env["kafka_bootstrap"], env["retrier_group"], retry_topic))
        assert committed(env) == position  # the live group did not move

    assert sorted(json.loads(request.body)["data"]["n"] for request in receiver.requests("/late")) == [2, 4]
    assert len(receiver.requests("/live")) == 6
    originals = {
        record.value(): delivery_id_for(source_of(record), late.id)
        for record in read_topic(env["kafka_bootstrap"], env["source_topic"], count=6)
    }
    assert {request.header("X-Asset-Webhook-Delivery") for request in got} == {
        originals[request.body] for request in got
    }


def test_rewinding_the_dispatcher_group_needs_it_stopped(
    env: TestEnv, kafka_engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    add_webhook(kafka_engine, name="Live", url=receiver.url("/live"))
    hour = timedelta(hours=1)
    produce(env, [(event("asset.created", n, n=n), NOW - (4 - n) * hour) for n in range(4)])
    with service("dispatcher", env.values, tmp_path / "run.log") as running:
        receiver.wait_for(4, "/live")
        running.wait_assigned()
        refused = cli("replay", "--rewind-group", "--to", "2h", env=env.values)
        assert refused.code == 2
        assert (
            refused.err.strip()
            == f"Error: the group {env['dispatcher_group']} has 1 running member: stop it first"
        )
    rewound = cli("replay", "--rewind-group", "--to", (NOW - 2.5 * hour).isoformat(), env=env.values)
    assert rewound.code == 0, rewound.err
    header, *rows, summary = rewound.out.strip().splitlines()
    assert header.split() == ["PARTITION", "OFFSET"]
    assert [row.split()[0] for row in rows] == ["0", "1", "2"]
    assert summary == (
        f"group {env['dispatcher_group']} now starts at these offsets of {env['source_topic']} (3 partitions)"
    )
    with service("dispatcher", env.values, tmp_path / "again.log") as again:
        # The events at or after the time the group was moved to are read again; the delivery log says
        # they were delivered, so they are not sent twice (`replay` is the command that re-sends).
        wait_until(
            lambda: re.search(r"read again: skipped 2 of 2 deliveries", again.output()),
            what="the two events read again to be skipped",
        )
        wait_until(
            lambda: committed_to_end(env["kafka_bootstrap"], env["dispatcher_group"], env["source_topic"]),
            what="the group to pass them",
        )
    assert len(receiver.requests("/live")) == 4


# -- dead letters by id, resolved dead letters, attempt numbers, cut listings ---------------------------


def dead_letter(
    env: TestEnv, delivery_id: str, dead_at: datetime, *, webhook_id: int = 1, made: int = 2
) -> None:
    """Put a dead-lettered delivery whose ``made`` attempts failed into the test's dead-letter topic."""
    source = SourceRef(topic=env["source_topic"], partition=0, offset=0)
    history = tuple(
        AttemptRecord(attempt=number, at=dead_at, status_code=503, error="HTTP 503", duration_ms=1.0)
        for number in range(1, made + 1)
    )
    task = DeliveryTask(
        delivery_id=delivery_id, webhook_id=webhook_id, event="asset.lost", asset_key="7", attempt=made + 1,
        not_before=dead_at, source=source, history=history,
    )  # fmt: skip
    letter = DeadLetter(
        kind=DeadLetterKind.ATTEMPTS_EXHAUSTED, reason=f"{made} attempts failed, last: HTTP 503",
        dead_at=dead_at, source=source, task=task,
    )  # fmt: skip
    producer = Producer({"bootstrap.servers": env["kafka_bootstrap"]})
    headers: list[tuple[str, str | bytes | None]] = [*dead_letter_headers(letter)]
    producer.produce(env["dlq_topic"], value=event("asset.lost", 7), key=b"7", headers=headers)
    assert producer.flush(30) == 0


def logged(
    delivery_id: str, attempt: int, success: bool, at: datetime, *, webhook_id: int = 1, offset: int = 0
) -> LogEntry:
    return LogEntry(
        webhook_id=webhook_id, event="asset.lost", asset_id="7", delivery_id=delivery_id, attempt=attempt,
        success=success, status_code=200 if success else 503, duration_ms=1.0,
        error=None if success else "HTTP 503", response_body=None, source_topic="asset-events",
        source_partition=0, source_offset=offset, created_at=at,
    )  # fmt: skip


def retry_tasks(env: TestEnv, count: int) -> list[DeliveryTask]:
    """The tasks on the shortest retry tier, exactly ``count`` of them."""
    topic = f"{env['retry_topic_prefix']}.1s"
    records = read_topic(env["kafka_bootstrap"], topic, count=count)
    assert records_in(env, topic) == count
    tasks = [DeliveryTask.model_validate_json(header_value(r.headers(), TASK_HEADER) or b"") for r in records]
    return sorted(tasks, key=lambda task: (task.delivery_id, task.attempt))


def test_unknown_dead_letter_ids_exit_3_and_entries_already_done_say_so(
    env: TestEnv, kafka_engine: Engine
) -> None:
    dead_letter(env, "d-1", NOW - timedelta(hours=1))
    for args in (("replay", "99999"), ("purge", "99999", "--yes"), ("replay", "--dry-run", "99999")):
        missing = cli("dlq", *args, env=env.values)
        assert missing.code == 3, args
        assert missing.err == "Error: no dead letter with id 99999\n"
    several = cli("dlq", "replay", "1", "99999", "12345", env=env.values)
    assert (several.code, several.err) == (3, "Error: no dead letters with ids 12345, 99999\n")
    assert records_in(env, f"{env['retry_topic_prefix']}.1s") == 0  # nothing was sent for the known one

    first = cli("dlq", "replay", "1", env=env.values)
    assert first.out.strip() == "replayed 1 entry, 0 missing from the topic"
    (entry,) = entries_out("--status", "all", env=env)
    assert entry["status"] == "replayed"
    when = datetime.fromisoformat(entry["resolved_at"]).isoformat(timespec="seconds")
    again = cli("dlq", "replay", "1", env=env.values)
    assert (again.code, again.out.strip()) == (0, f"entry 1 was already replayed at {when}")
    purged = cli("dlq", "purge", "1", "--yes", env=env.values)
    assert (purged.code, purged.out.strip()) == (0, f"entry 1 was already replayed at {when}")
    assert [task.delivery_id for task in retry_tasks(env, 1)] == ["d-1"]  # sent once


def test_a_dead_letter_whose_delivery_succeeded_later_is_resolved_not_replayed(
    env: TestEnv, store_url: str
) -> None:
    on = env.with_(database_url=store_url)
    store = make_engine(store_url)
    upgrade(store)
    ensure_topics(on.settings())
    died = NOW - timedelta(hours=1)
    for delivery_id in ("d-retried", "d-still-failing", "d-succeeded-before"):
        dead_letter(on, delivery_id, died)
    later = died + timedelta(minutes=1)
    insert_entries(
        store,
        [
            logged("d-retried", 3, True, later),  # `logs retry` delivered it after it died
            logged("d-still-failing", 3, False, later),
            logged("d-succeeded-before", 1, True, died - timedelta(minutes=1)),
        ],
    )
    store.dispose()
    pending = entries_out(env=on)
    assert sorted(row["delivery_id"] for row in pending) == ["d-still-failing", "d-succeeded-before"]
    (resolved,) = entries_out("--status", "resolved", env=on)
    assert resolved["delivery_id"] == "d-retried"
    assert datetime.fromisoformat(resolved["resolved_at"]) == later

    replayed = cli("dlq", "replay", "--webhook", "1", env=on.values)
    assert replayed.out.strip() == "replayed 2 entries, 0 missing from the topic"
    assert [task.delivery_id for task in retry_tasks(on, 2)] == ["d-still-failing", "d-succeeded-before"]
    by_id = cli("dlq", "replay", str(resolved["id"]), env=on.values)
    assert by_id.out.strip() == (
        f"entry {resolved['id']} was already resolved (its delivery succeeded) at "
        f"{later.isoformat(timespec='seconds')}"
    )
    assert records_in(on, f"{on['retry_topic_prefix']}.1s") == 2


def test_every_resend_takes_the_next_attempt_number_after_the_logged_ones(
    env: TestEnv, store_url: str
) -> None:
    on = env.with_(database_url=store_url)
    store = make_engine(store_url)
    upgrade(store)
    ensure_topics(on.settings())
    hook = add_webhook(store, name="ERP", url="https://erp.example.com/hook")
    fresh = add_webhook(store, name="New", url="https://new.example.com/hook")
    produce(on, [(event("asset.lost", 7), NOW - timedelta(hours=2))])
    (record,) = read_topic(on["kafka_bootstrap"], on["source_topic"], count=1)
    source = source_of(record)
    delivery = delivery_id_for(source, hook.id)
    at = NOW - timedelta(hours=1)

    def log(attempt: int) -> None:
        entry = logged(delivery, attempt, False, at, webhook_id=hook.id, offset=source.offset)
        insert_entries(store, [replace(entry, source_topic=source.topic, source_partition=source.partition)])

    for attempt in (1, 2, 3):  # attempts 1 and 2 died; 3 was an earlier re-send that failed too
        log(attempt)
    dead_letter(on, delivery, at, webhook_id=hook.id, made=2)
    assert cli("dlq", "replay", "--all", env=on.values).code == 0
    (replayed,) = retry_tasks(on, 1)
    assert (replayed.attempt, replayed.attempt_base) == (4, 3)  # not 3 again, from the letter's history

    log(5)  # the log is written in batches: a later attempt can have a lower log id
    log(4)
    newest_row = max(entry.id for entry in recent_entries(store))
    retried = cli("logs", "retry", str(newest_row), env=on.values)
    assert retried.code == 0, retried.err
    assert [(task.attempt, task.attempt_base) for task in retry_tasks(on, 2)] == [(4, 3), (6, 5)]

    window = ["--from", (NOW - timedelta(hours=3)).isoformat(), "--to", NOW.isoformat()]
    again = cli("replay", *window, "--webhook", str(hook.id), "--webhook", str(fresh.id), env=on.values)
    assert again.code == 0, again.err
    tasks = sorted((task.webhook_id, task.attempt, task.attempt_base) for task in retry_tasks(on, 4))
    # The replay follows the newest logged attempt (5) too; the re-sends queued above are not logged yet.
    assert tasks == sorted([(hook.id, 4, 3), (hook.id, 6, 5), (hook.id, 6, 5), (fresh.id, 1, 0)])
    store.dispose()


def test_listings_cut_by_their_limit_say_how_many_matched(
    env: TestEnv, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    on = env.with_(database_url=store_url)
    store = make_engine(store_url)
    upgrade(store)
    ensure_topics(on.settings())
    insert_entries(store, [logged(f"d-{n}", 1, n % 2 == 0, NOW - timedelta(seconds=n)) for n in range(60)])
    store.dispose()
    for number in range(3):
        dead_letter(on, f"d-dead-{number}", NOW - timedelta(hours=1))

    def said(*args: str) -> str:
        result = CliRunner().invoke(main, list(args), env=on.values, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    assert said("logs").splitlines()[-1] == "showing 50 of 60 attempts (--limit)"
    assert said("logs", "--limit", "60").splitlines()[-1] == "60 attempts"
    assert (
        said("logs", "--status", "ok", "--limit", "10").splitlines()[-1]
        == "showing 10 of 30 attempts (--limit)"
    )
    assert said("logs", "--webhook", "2").splitlines()[-1] == "0 attempts"
    listed = json.loads(said("logs", "--json", "--limit", "5"))
    assert (len(listed["attempts"]), listed["total"], listed["total_exact"]) == (5, 60, True)
    monkeypatch.setattr("assethooks.operator.deliveries.COUNT_CAP", 55)
    assert said("logs").splitlines()[-1] == "showing 50 of more than 55 attempts (--limit)"
    listed = json.loads(said("logs", "--json"))
    assert (len(listed["attempts"]), listed["total"], listed["total_exact"]) == (50, 55, False)

    assert said("dlq", "list", "--limit", "2").splitlines()[-1] == "showing 2 of 3 pending entries (--limit)"
    assert said("dlq", "list").splitlines()[-1] == "3 pending entries"
    assert said("dlq", "list", "--status", "all", "--limit", "1").splitlines()[-1] == (
        "showing 1 of 3 entries (--limit)"
    )
    assert said("dlq", "list", "--status", "replayed").splitlines()[-1] == "0 replayed entries"
    entries = json.loads(said("dlq", "list", "--json", "--limit", "2"))
    assert (len(entries["entries"]), entries["total"], entries["total_exact"]) == (2, 3, True)
