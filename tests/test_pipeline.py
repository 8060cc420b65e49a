"""The delivery pipeline end to end: real broker, real ``assethooks run`` processes, a real HTTP receiver."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from sqlalchemy import Engine

from assethooks.delivery import USER_AGENT
from assethooks.kafka import ensure_topics
from assethooks.signing import sign
from assethooks.store.db import make_engine
from assethooks.store.delivery_log import recent_entries
from assethooks.store.migrate import upgrade
from assethooks.store.webhooks import WebhookStore
from producers.events import EventPublisher
from schemas.tasks import DEAD_LETTER_HEADER, DeadLetter, DeadLetterKind, header_value
from schemas.webhooks import Webhook, validate_webhook
from tests.conftest import TestEnv
from tests.support import Received, Receiver, committed_to_end, read_topic, service, wait_until


@pytest.fixture
def engine(env: TestEnv, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """The test's migrated store (SQLite unless parametrized with "postgres"), with the topics created."""
    if getattr(request, "param", "sqlite") == "postgres":
        env.values["ASSETHOOKS_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    store = make_engine(env["database_url"])
    upgrade(store)
    ensure_topics(env.settings())
    yield store
    store.dispose()


def add_webhook(engine: Engine, **fields: Any) -> Webhook:
    return WebhookStore(engine).create(validate_webhook(**{"events": None, **fields}))


def event(name: str, asset_id: int | None, **data: Any) -> bytes:
    envelope = {
        "event": name,
        "timestamp": "2026-11-28T12:00:00+00:00",
        "source": "perfex_assets_module",
        "asset_id": asset_id,
        "asset": {
            "id": asset_id if asset_id is not None else data.pop("deleted_id", 0),
            "name": f"Asset {asset_id}",
        },
        "data": data,
    }
    return json.dumps(envelope).encode()


def publish(env: TestEnv, *bodies: bytes) -> None:
    with EventPublisher(env.settings()) as publisher:
        for body in bodies:
            assert publisher.publish(body)
    assert publisher.report.failed == []


def all_committed(env: TestEnv) -> bool:
    return committed_to_end(env["kafka_bootstrap"], env["dispatcher_group"], env["source_topic"])


def test_every_matching_active_webhook_gets_one_signed_delivery(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    erp = add_webhook(
        engine, name="ERP", url=receiver.url("/erp"), secret="erp-secret", headers={"X-Api-Key": "k-erp"}
    )
    lost = add_webhook(
        engine,
        name="Lost",
        url=receiver.url("/lost"),
        events=["asset.checked_out", "asset.lost"],
        secret="lost-secret",
    )
    add_webhook(engine, name="Off", url=receiver.url("/off"), active=False)
    add_webhook(engine, name="Unsigned", url=receiver.url("/unsigned"))
    bodies = [
        event("asset.created", 1, by="ana"),
        event("asset.checked_out", 2, due="2026-12-01"),
        event("asset.lost", 3),
        event("asset.updated", 1, field="name"),
        event("alert.low_stock", 4, quantity=1, threshold=5),
        event("asset.deleted", None, deleted_id=5),
    ]
    publish(env, *bodies)
    sent_at = time.time()
    with service("all", env.values, tmp_path / "run.log"):
        receiver.wait_for(6, "/erp")
        receiver.wait_for(6, "/unsigned")
        receiver.wait_for(2, "/lost")
        wait_until(lambda: all_committed(env), what="the dispatcher to commit every event")

    assert receiver.requests("/off") == []
    assert len(receiver.requests("/lost")) == 2
    assert len(receiver.requests()) == 14

    def check(request: Received, secret: str | None) -> None:
        assert request.body in bodies  # byte for byte what was published
        payload = json.loads(request.body)
        assert request.header("X-Asset-Webhook-Event") == payload["event"]
        assert request.header("Content-Type") == "application/json"
        assert request.header("User-Agent") == USER_AGENT
        assert request.header("X-Asset-Webhook-Attempt") == "1"
        assert abs(int(request.header("X-Asset-Webhook-Timestamp") or 0) - sent_at) < 120
        if secret is None:
            assert request.header("X-Asset-Webhook-Signature") is None
        else:
            assert request.header("X-Asset-Webhook-Signature") == sign(secret, request.body)

    for request in receiver.requests("/erp"):
        check(request, "erp-secret")
        assert request.header("X-Api-Key") == "k-erp"
    for request in receiver.requests("/lost"):
        check(request, "lost-secret")
    for request in receiver.requests("/unsigned"):
        check(request, None)
    assert sorted(request.body for request in receiver.requests("/erp")) == sorted(bodies)
    assert {json.loads(request.body)["event"] for request in receiver.requests("/lost")} == {
        "asset.checked_out",
        "asset.lost",
    }
    delivery_ids = [request.header("X-Asset-Webhook-Delivery") for request in receiver.requests()]
    assert len(set(delivery_ids)) == 14

    logged = recent_entries(engine, limit=100)
    assert len(logged) == 14
    assert all(entry.success and entry.status_code == 200 and entry.attempt == 1 for entry in logged)
    assert {entry.webhook_id for entry in logged} == {erp.id, lost.id, erp.id + 3}
    assert {entry.delivery_id for entry in logged} == set(delivery_ids)


def test_events_published_by_a_plain_kafka_client_are_delivered(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    assert kcat, "kcat is required (Debian package kcat); .ci/run installs it"
    add_webhook(engine, name="Any", url=receiver.url("/any"), secret="k")
    body = event("asset.transferred", 42, to="Lisbon")
    subprocess.run(
        [kcat, "-b", env["kafka_bootstrap"], "-P", "-t", env["source_topic"], "-k", "42"],
        input=body + b"\n",
        check=True,
        timeout=30,
    )
    with service("dispatcher", env.values, tmp_path / "run.log"):
        (request,) = receiver.wait_for(1, "/any")
    assert request.body == body
    assert request.header("X-Asset-Webhook-Signature") == sign("k", body)


@pytest.mark.parametrize("engine", ["sqlite", "postgres"], indirect=True)
def test_a_flaky_receiver_gets_the_delivery_on_attempt_three_with_one_delivery_id(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    hook = add_webhook(engine, name="Flaky", url=receiver.url("/flaky"))
    receiver.plan("/flaky", 500, 503, then=200)
    publish(env, event("asset.checked_in", 9))
    with service("all", env.values, tmp_path / "run.log"):
        requests = receiver.wait_for(3, "/flaky")
        wait_until(lambda: len(recent_entries(engine)) == 3, what="three logged attempts")
    assert [request.header("X-Asset-Webhook-Attempt") for request in requests] == ["1", "2", "3"]
    assert len({request.header("X-Asset-Webhook-Delivery") for request in requests}) == 1
    gaps = [later.at - earlier.at for earlier, later in pairwise(requests)]
    assert all(gap >= 0.75 for gap in gaps), gaps  # the 1 s tier with at most 20 % jitter
    logged = sorted(recent_entries(engine, webhook_id=hook.id), key=lambda entry: entry.attempt)
    assert [(entry.attempt, entry.success, entry.status_code) for entry in logged] == [
        (1, False, 500),
        (2, False, 503),
        (3, True, 200),
    ]
    assert logged[0].error == "HTTP 500"
    assert logged[0].response_body == "answer 500"


def test_a_receiver_that_always_fails_ends_in_the_dead_letter_topic_with_its_history(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    hook = add_webhook(engine, name="Down", url=receiver.url("/down"))
    receiver.plan("/down", "hang", then=502)
    body = event("asset.broken", 13)
    publish(env, body)
    with service("all", env.with_(delivery_timeout="1s").values, tmp_path / "run.log"):
        (record,) = read_topic(env["kafka_bootstrap"], env["dlq_topic"], count=1, timeout=60)
    assert record.value() == body
    assert record.key() == b"13"
    letter = DeadLetter.model_validate_json(header_value(record.headers(), DEAD_LETTER_HEADER) or b"")
    assert letter.kind is DeadLetterKind.ATTEMPTS_EXHAUSTED
    assert letter.reason == "3 attempts failed, last: HTTP 502"
    assert letter.task is not None
    assert letter.task.webhook_id == hook.id
    assert [(item.attempt, item.status_code, item.error) for item in letter.task.history] == [
        (1, None, "no answer within 1s"),
        (2, 502, "HTTP 502"),
        (3, 502, "HTTP 502"),
    ]
    requests = receiver.requests("/down")
    assert len(requests) == 3
    assert {request.header("X-Asset-Webhook-Delivery") for request in requests} == {letter.task.delivery_id}


def test_malformed_records_go_to_the_dead_letter_topic_and_the_rest_is_delivered(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    add_webhook(engine, name="All", url=receiver.url("/all"))
    good = [event("asset.created", 1), event("asset.allocated", 2, staff="ana"), event("asset.revoked", 3)]
    bad = {
        b"this is not json": "not valid JSON",
        b'["a", "list"]': "not a JSON object",
        event("asset.sold", 4): "unknown event 'asset.sold'",
        b'{"event": "asset.created", "timestamp": "2026-11-28T12:00:00+00:00"}': "missing field 'source'",
        event("asset.created", 5).replace(
            b'"asset_id": 5', b'"asset_id": "five"'
        ): "field 'asset_id': Input should be a valid integer",
        b"\xff\x00\xfe": "not valid JSON",
    }
    producer = Producer({"bootstrap.servers": env["kafka_bootstrap"]})
    records = [good[0], *list(bad)[:3], good[1], *list(bad)[3:], good[2]]
    for number, value in enumerate(records):
        producer.produce(env["source_topic"], value=value, key=str(number))
    assert producer.flush(30) == 0

    with service("dispatcher", env.values, tmp_path / "run.log"):
        receiver.wait_for(3, "/all")
        dead = read_topic(env["kafka_bootstrap"], env["dlq_topic"], count=len(bad))
        wait_until(lambda: all_committed(env), what="the dispatcher to commit every record")
    assert sorted(request.body for request in receiver.requests("/all")) == sorted(good)
    reasons = {}
    for record in dead:
        letter = DeadLetter.model_validate_json(header_value(record.headers(), DEAD_LETTER_HEADER) or b"")
        assert letter.kind is DeadLetterKind.INVALID_EVENT
        assert letter.source.topic == env["source_topic"]
        original = record.value()
        assert original is not None
        reasons[original] = letter.reason
    assert set(reasons) == set(bad)  # the original bytes, each one
    for value, reason in bad.items():
        assert reasons[value].startswith(reason), (value, reasons[value])


def test_a_dispatcher_killed_mid_stream_loses_nothing(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    add_webhook(engine, name="Ledger", url=receiver.url("/ledger"))
    receiver.plan("/ledger", then=(0.01, 200))  # slow enough to be killed in the middle
    expected = 400
    publish(env, *(event("asset.updated", number % 37, seq=number) for number in range(expected)))

    def received() -> set[int]:
        return {json.loads(request.body)["data"]["seq"] for request in receiver.requests("/ledger")}

    small = env.with_(max_in_flight=50)
    with service("dispatcher", small.values, tmp_path / "run.log") as first:
        wait_until(lambda: len(received()) >= expected // 3, what="a third of the deliveries")
        assert first.kill() == -9
    assert len(received()) < expected, "the kill came too late to prove anything"
    with service("dispatcher", small.values, tmp_path / "run.log"):
        wait_until(lambda: len(received()) == expected, timeout=90, what="every delivery after the restart")
        wait_until(lambda: all_committed(env), what="the restarted dispatcher to commit")
    copies = Counter(json.loads(request.body)["data"]["seq"] for request in receiver.requests("/ledger"))
    duplicates = sum(count - 1 for count in copies.values())
    print(f"kill -9 mid-stream: expected {expected}, delivered {len(copies)}, duplicates {duplicates}")
    assert set(copies) == set(range(expected))


def test_deliveries_of_one_asset_to_one_webhook_start_in_event_order(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    add_webhook(engine, name="Ordered", url=receiver.url("/ordered"))
    receiver.plan("/ordered", then=(0.005, 200))
    publish(env, *(event("asset.updated", 7 if number % 2 else 8, seq=number) for number in range(60)))
    with service("dispatcher", env.values, tmp_path / "run.log"):
        requests = receiver.wait_for(60, "/ordered")
    for asset in (7, 8):
        sequence = [
            json.loads(r.body)["data"]["seq"] for r in requests if json.loads(r.body)["asset_id"] == asset
        ]
        assert sequence == sorted(sequence)
        assert len(sequence) == 30


def test_a_new_webhook_reaches_the_running_dispatcher_within_seconds(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    with service(
        "dispatcher", env.with_(webhook_refresh_interval="2s").values, tmp_path / "run.log"
    ) as running:
        running.wait_assigned()
        add_webhook(engine, name="Late", url=receiver.url("/late"))
        created = time.monotonic()
        with EventPublisher(env.settings()) as publisher:

            def probe_arrived() -> bool:
                publisher.publish(event("asset.reserved", 1))
                publisher.flush()
                return bool(receiver.requests("/late"))

            wait_until(probe_arrived, timeout=5, what="a delivery to the webhook created after the start")
    print(f"new webhook used {time.monotonic() - created:.2f}s after it was saved")


def test_sigterm_finishes_the_work_commits_and_exits_zero(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    add_webhook(engine, name="Slow", url=receiver.url("/slow"))
    receiver.plan("/slow", then=(0.3, 200))
    publish(env, *(event("asset.updated", number) for number in range(10)))
    with service("dispatcher", env.values, tmp_path / "run.log") as running:
        # Every record taken in (a stop leaves records not yet fetched to the next run, uncommitted), every
        # answer still 0.3 s away: the stop must wait for them.
        receiver.wait_for(10, "/slow")
        assert running.stop() == 0
    assert "revoked" in running.output()
    assert all_committed(env)
    logged = recent_entries(engine)
    assert len({entry.delivery_id for entry in logged}) == len(logged)
    assert len(logged) == len(receiver.requests("/slow"))


def test_a_destination_on_a_private_address_is_refused_without_a_request(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    add_webhook(engine, name="Inside", url=receiver.url("/inside"))
    add_webhook(engine, name="By name", url=f"http://localhost:{receiver.port}/by-name")
    fullwidth = "".join(chr(ord(digit) + 0xFEE0) if digit.isdigit() else digit for digit in "127.0.0.1")
    add_webhook(engine, name="Disguised", url=f"http://{fullwidth}:{receiver.port}/disguised")
    publish(env, event("asset.created", 1))
    with service("all", env.with_(allowed_cidrs="").values, tmp_path / "run.log"):
        dead = read_topic(env["kafka_bootstrap"], env["dlq_topic"], count=3)
    assert receiver.requests() == []
    for record in dead:
        letter = DeadLetter.model_validate_json(header_value(record.headers(), DEAD_LETTER_HEADER) or b"")
        assert letter.kind is DeadLetterKind.UNDELIVERABLE
        assert "not a public address" in letter.reason


def test_a_retry_whose_webhook_was_deleted_goes_to_the_dead_letter_topic(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    hook = add_webhook(engine, name="Gone", url=receiver.url("/gone"))
    receiver.plan("/gone", then=500)
    publish(env, event("asset.liquidated", 31))
    with service("all", env.with_(retry_schedule="3s").values, tmp_path / "run.log"):
        receiver.wait_for(1, "/gone")
        WebhookStore(engine).delete(hook.id)
        (record,) = read_topic(env["kafka_bootstrap"], env["dlq_topic"], count=1)
    letter = DeadLetter.model_validate_json(header_value(record.headers(), DEAD_LETTER_HEADER) or b"")
    assert letter.kind is DeadLetterKind.UNDELIVERABLE
    assert letter.reason == f"webhook {hook.id} was deleted"
    assert letter.task is not None
    assert [item.status_code for item in letter.task.history] == [500]
    assert len(receiver.requests("/gone")) == 1


def test_an_event_too_large_for_a_retry_record_is_dead_lettered_by_position(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    add_webhook(engine, name="Down", url=receiver.url("/down"))
    receiver.plan("/down", then=500)
    # Just under librdkafka's message.max.bytes (1,000,000) alone, over it with a task header.
    body = event("asset.updated", 3, notes="x" * 999_570)
    publish(env, body)
    with service("dispatcher", env.values, tmp_path / "run.log"):
        (record,) = read_topic(env["kafka_bootstrap"], env["dlq_topic"], count=1)
        wait_until(lambda: all_committed(env), what="the dispatcher to go on")
    letter = DeadLetter.model_validate_json(header_value(record.headers(), DEAD_LETTER_HEADER) or b"")
    assert record.value() is None
    assert letter.kind is DeadLetterKind.UNDELIVERABLE
    assert "cannot wait for a retry: record too large" in letter.reason
    assert f"see {env['source_topic']}[" in letter.reason
    assert letter.task is not None
    assert letter.task.history[0].status_code == 500


def scrape(port: int) -> dict[str, float]:
    """The metrics endpoint's samples, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_the_metrics_endpoint_shows_the_counters_moving(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    add_webhook(engine, name="Counted", url=receiver.url("/counted"))
    add_webhook(engine, name="Refusing", url=receiver.url("/refusing"), events=["asset.lost"])
    receiver.plan("/refusing", then=500)
    port = free_port()
    with service("all", env.values, tmp_path / "run.log", "--metrics-port", str(port)):
        publish(env, *(event("asset.created", number) for number in range(5)))
        receiver.wait_for(5, "/counted")
        first = wait_until(lambda: _scraped(port, 'assethooks_deliveries_total{outcome="delivered"}', 5))
        publish(env, *(event("asset.lost", number) for number in range(3)))
        receiver.wait_for(3, "/refusing")
        wait_until(lambda: _scraped(port, 'assethooks_deliveries_total{outcome="failed"}', 3))
        later = wait_until(lambda: _scraped(port, 'assethooks_handoffs_total{topic="retry-', 3, prefix=True))
        lag = wait_until(lambda: _scraped(port, "assethooks_consumer_lag{", 0, prefix=True), timeout=20)
    assert (
        later['assethooks_deliveries_total{outcome="delivered"}']
        >= first['assethooks_deliveries_total{outcome="delivered"}'] + 3
    )
    assert later["assethooks_attempt_duration_seconds_count"] >= 11
    assert any(name.startswith('assethooks_in_flight_records{group="dispatcher-') for name in later)
    assert any(env["source_topic"] in name for name in lag if name.startswith("assethooks_consumer_lag{"))


def _scraped(port: int, name: str, at_least: float, *, prefix: bool = False) -> dict[str, float]:
    """The samples once ``name`` (or a sample starting with it) reached ``at_least``; empty before."""
    try:
        samples = scrape(port)
    except OSError:
        return {}
    values = (
        [value for key, value in samples.items() if key.startswith(name)]
        if prefix
        else [samples.get(name, -1)]
    )
    return samples if values and max(values) >= at_least else {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
