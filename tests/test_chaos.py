"""Fault injection: real processes, a ledger of expected against received deliveries (by delivery id).

Every scenario must end with lost = 0: each expected delivery reached the receiver or, when its attempts ran
out, the dead-letter topic. Each prints expected, delivered, lost, duplicates, dead letters with reasons,
and how long recovery took. ``make test`` runs them short; ``make chaos`` (``ASSETHOOKS_CHAOS_SCALE=long``)
runs them longer.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message, Producer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from assethooks.errors import InvalidEventError
from assethooks.kafka import MetadataReader, ensure_topics, scan
from assethooks.store.db import make_engine
from assethooks.store.delivery_log import LogQuery, query_attempts
from assethooks.store.migrate import upgrade
from assethooks.store.webhooks import WebhookStore
from schemas.events import parse_event
from schemas.tasks import DEAD_LETTER_HEADER, DeadLetter, SourceRef, delivery_id_for, header_value
from schemas.webhooks import validate_webhook
from tests.conftest import TestEnv
from tests.support import ROOT, Receiver, Service, free_port, wait_until

pytestmark = pytest.mark.chaos

LONG = os.environ.get("ASSETHOOKS_CHAOS_SCALE", "short") == "long"
EVENTS = 3000 if LONG else 300
FAULTS = 10 if LONG else 3
# Enough attempts, close together, that nothing needs the dead-letter topic while faults last.
PATIENT = "1s,1s,2s,2s,3s,3s,5s,5s,5s,5s,5s,5s"


def event(number: int) -> bytes:
    return json.dumps(
        {
            "event": "asset.updated",
            "timestamp": "2026-11-28T12:00:00+00:00",
            "source": "perfex_assets_module",
            "asset_id": number % 50,
            "asset": {"id": number % 50},
            "data": {"seq": number},
        }
    ).encode()


class Ledger:
    """What was published, what should arrive, and what did."""

    def __init__(self, env: TestEnv, receivers: list[Receiver], webhook_ids: list[int]) -> None:
        self.env = env
        self.receivers = receivers  # one after the other on the same port, when a test restarts it
        self.webhook_ids = webhook_ids
        self.expected: set[str] = set()
        self.published_at = 0.0

    def publish(self, bodies: list[bytes]) -> None:
        """Publish ``bodies``; every valid one is expected once per webhook."""
        producer = Producer({"bootstrap.servers": self.env["kafka_bootstrap"], "linger.ms": 5})
        topic = self.env["source_topic"]

        def landed(error: KafkaError | None, message: Message) -> None:
            assert error is None, error
            try:
                parse_event(message.value())
            except InvalidEventError:
                return
            source = SourceRef(topic=topic, partition=message.partition() or 0, offset=message.offset() or 0)
            self.expected.update(delivery_id_for(source, webhook) for webhook in self.webhook_ids)

        for number, body in enumerate(bodies):
            producer.produce(topic, body, key=str(number % 50).encode(), on_delivery=landed)
            producer.poll(0)
        assert producer.flush(60) == 0
        self.published_at = time.monotonic()

    def delivered(self) -> Counter[str]:
        """Delivery ids answered 2xx, with how many times."""
        answered = [request for receiver in self.receivers for request in receiver.delivered()]
        return Counter(request.header("X-Asset-Webhook-Delivery") or "" for request in answered)

    def requests(self) -> int:
        """Requests received, answered or not."""
        return sum(len(receiver.requests()) for receiver in self.receivers)

    def dead_letters(self) -> dict[str, str]:
        """Delivery id -> reason, of the dead-letter records of deliveries."""
        settings_ = self.env.settings()
        topic = settings_.dlq_topic
        with MetadataReader(settings_) as reader:
            marks = reader.watermarks(topic, reader.partitions(topic))
        found = {}
        for record in scan(
            settings_,
            topic,
            {p: low for p, (low, _) in marks.items()},
            {p: high for p, (_, high) in marks.items()},
        ):
            letter = DeadLetter.model_validate_json(header_value(record.headers(), DEAD_LETTER_HEADER) or b"")
            if letter.task is not None:
                found[letter.task.delivery_id] = letter.reason
        return found

    def complete(self) -> bool:
        """True once every expected delivery arrived or was dead-lettered."""
        return self.expected <= set(self.delivered()) | set(self.dead_letters())

    def report(self, scenario: str, recovery_started: float, *, faults: int = 0) -> int:
        """Wait for the ledger to close, print the figures, insist that nothing was lost; return the number
        of duplicate requests."""
        wait_until(
            lambda: set(self.delivered()) >= self.expected or self.complete(),
            timeout=240,
            what=f"{scenario}: every delivery",
        )
        recovered = time.monotonic() - recovery_started
        delivered, dead = self.delivered(), self.dead_letters()
        lost = self.expected - set(delivered) - set(dead)
        duplicates = sum(count - 1 for count in delivered.values())
        reasons = Counter(dead.values())
        share = 100 * duplicates / max(1, sum(delivered.values()))
        per_fault = f", {duplicates / faults:.1f} per fault" if faults else ""
        print(
            f"\n[{scenario}] expected {len(self.expected)}, delivered {len(set(delivered) & self.expected)}, "
            f"lost {len(lost)}, duplicates {duplicates} ({share:.1f} %{per_fault}), "
            f"dead letters {len(dead)} {dict(reasons)}, recovery {recovered:.1f}s"
        )
        assert not lost
        return duplicates


def webhooks(engine: Engine, receiver: Receiver, count: int = 1) -> list[int]:
    store = WebhookStore(engine)
    return [
        store.create(validate_webhook(name=f"w{n}", url=receiver.url(f"/w{n}"), events=None)).id
        for n in range(count)
    ]


def reached(
    count: Callable[[], int], goal: int, done: Callable[[], bool] = lambda: False
) -> Callable[[], bool]:
    """A condition: ``count()`` reached ``goal`` (or ``done()``)."""
    return lambda: count() >= goal or done()


def started(role: str, env: TestEnv, log: Path) -> Service:
    return Service(role, env.values, log).start()


def stop_all(*processes: Service) -> None:
    for process in processes:
        if process.running:
            process.stop()


def test_killing_dispatcher_and_retrier_at_random_loses_nothing(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    ledger = Ledger(env, [receiver], webhooks(engine, receiver, 2))
    receiver.plan("/w0", then="fail-first")  # every delivery of w0 needs the retrier
    receiver.plan("/w1", then=(0.005, 200))
    chaotic = env.with_(retry_schedule=PATIENT, max_in_flight=100, breaker_failures=0)
    ledger.publish([event(number) for number in range(EVENTS)])
    processes = {role: started(role, chaotic, tmp_path / f"{role}.log") for role in ("dispatcher", "retrier")}
    rng = random.Random(7)
    try:
        for fault in range(FAULTS):
            goal = len(ledger.delivered()) + max(5, EVENTS // (FAULTS + 2))
            wait_until(
                reached(lambda: len(ledger.delivered()), goal, ledger.complete),
                timeout=120,
                what="progress",
            )
            role = rng.choice(["dispatcher", "retrier"])
            assert processes[role].kill() == -signal.SIGKILL
            processes[role] = started(role, chaotic, tmp_path / f"{role}.log")
            print(f"fault {fault + 1}: killed the {role} after {goal} deliveries")
        last = time.monotonic()
        duplicates = ledger.report("kill -9 dispatcher/retrier", last, faults=FAULTS)
        if LONG:  # a crash re-sends only what was in flight and not yet logged
            assert duplicates <= 0.05 * len(ledger.expected)
    finally:
        stop_all(*processes.values())


def test_the_broker_stopping_mid_stream_loses_nothing(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    port = free_port()
    broker = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_CONTROLLER_PORT": str(free_port())}
    script = str(ROOT / "scripts" / "kafka-local.sh")
    assert (
        subprocess.run(
            [script, "start"], env=broker, capture_output=True, timeout=180, check=False
        ).returncode
        == 0
    )
    try:
        own = env.with_(kafka_bootstrap=f"127.0.0.1:{port}", retry_schedule=PATIENT)
        ensure_topics(own.settings())
        ledger = Ledger(own, [receiver], webhooks(engine, receiver))
        receiver.plan("/w0", then=(0.01, 200))
        ledger.publish([event(number) for number in range(EVENTS)])
        process = started("all", own, tmp_path / "all.log")
        try:
            wait_until(lambda: len(ledger.delivered()) >= EVENTS // 3, timeout=120, what="a third delivered")
            subprocess.run([script, "stop"], env=broker, capture_output=True, timeout=60, check=True)
            down = len(ledger.delivered())
            wait_until(
                lambda: "Connection refused" in process.output(), what="the service to miss the broker"
            )
            subprocess.run([script, "start"], env=broker, capture_output=True, timeout=180, check=True)
            print(f"broker stopped after {down} deliveries, then started again")
            assert ledger.report("broker stopped and started", time.monotonic()) == 0
        finally:
            stop_all(process)
    finally:
        subprocess.run([script, "stop"], env=broker, capture_output=True, timeout=60, check=False)
        shutil.rmtree(ROOT / ".local" / "kafka" / f"node-{port}", ignore_errors=True)


def test_a_flapping_receiver_loses_nothing(env: TestEnv, engine: Engine, tmp_path: Path) -> None:
    first = Receiver().start()
    port = first.port
    ledger = Ledger(env, [first], webhooks(engine, first))
    phases: list[Any] = [500, "hang", "reset", (0.5, 200), "closed", 200]
    flapping = env.with_(retry_schedule=PATIENT, delivery_timeout="1s", breaker_failures=0)
    ledger.publish([event(number) for number in range(EVENTS)])
    process = started("all", flapping, tmp_path / "all.log")
    try:
        for phase in phases * (3 if LONG else 1):
            if phase == "closed":
                ledger.receivers[-1].stop()
                seen = process.output().count("cannot connect")
                wait_until(
                    reached(lambda: process.output().count("cannot connect"), seen + 5),
                    what="refused attempts",
                )
                ledger.receivers.append(Receiver(port=port).start())
                continue
            ledger.receivers[-1].plan("/w0", then=phase)
            goal = ledger.requests() + 5
            wait_until(
                reached(ledger.requests, goal),
                timeout=60,
                what=f"attempts during the {phase} phase",
            )
            print(f"phase {phase}: {ledger.requests()} requests so far")
        ledger.receivers[-1].plan("/w0", then=200)
        ledger.report("receiver flapping: 500, timeout, reset, slow, closed", time.monotonic())
    finally:
        stop_all(process)
        for receiver in ledger.receivers:
            receiver.stop()


def test_postgresql_restarting_loses_nothing(env: TestEnv, receiver: Receiver, tmp_path: Path) -> None:
    port = free_port()
    # Not under tmp_path: the server runs as the postgres user, which cannot enter pytest's folders.
    folder = ROOT / ".local" / f"chaos-pg-{port}"
    pg = {**os.environ, "PG_PORT": str(port), "PG_LOCAL_DIR": str(folder)}
    script = str(ROOT / "scripts" / "postgres-local.sh")
    assert (
        subprocess.run([script, "start"], env=pg, capture_output=True, timeout=120, check=False).returncode
        == 0
    )
    try:
        url = subprocess.run(
            [script, "url"], env=pg, capture_output=True, text=True, check=True
        ).stdout.strip()
        store_env = env.with_(database_url=url, retry_schedule=PATIENT)
        engine = make_engine(url)
        upgrade(engine)
        ensure_topics(store_env.settings())
        ledger = Ledger(store_env, [receiver], webhooks(engine, receiver))
        receiver.plan("/w0", then=(0.01, 200))
        ledger.publish([event(number) for number in range(EVENTS)])
        process = started("all", store_env, tmp_path / "all.log")
        try:
            wait_until(lambda: len(ledger.delivered()) >= EVENTS // 3, timeout=120, what="a third delivered")
            subprocess.run([script, "stop"], env=pg, capture_output=True, timeout=60, check=True)
            wait_until(
                lambda: "delivery log not written" in process.output(),
                timeout=60,
                what="the store to be missed",
            )
            subprocess.run([script, "start"], env=pg, capture_output=True, timeout=120, check=True)
            ledger.report("PostgreSQL restarted", time.monotonic())
            # every attempt is logged once the writer's retry reaches the restarted server
            wait_until(
                lambda: (
                    {entry.delivery_id for entry in query_attempts(engine, LogQuery(limit=None))}
                    >= ledger.expected
                ),
                timeout=60,
                what="every attempt in the delivery log",
            )
            assert "delivery log entry refused" not in process.output()
        finally:
            stop_all(process)
            engine.dispose()
    finally:
        subprocess.run([script, "stop"], env=pg, capture_output=True, timeout=60, check=False)
        shutil.rmtree(folder, ignore_errors=True)


def test_one_of_two_dispatchers_killed_mid_stream_loses_nothing(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    ledger = Ledger(env, [receiver], webhooks(engine, receiver))
    receiver.plan("/w0", then=(0.01, 200))
    group = env.with_(retry_schedule=PATIENT, max_in_flight=50)
    ledger.publish([event(number) for number in range(EVENTS)])
    first, second = (started("dispatcher", group, tmp_path / f"d{n}.log") for n in (1, 2))
    try:
        wait_until(
            lambda: "assigned" in first.output() and "assigned" in second.output(), what="both to join"
        )
        wait_until(lambda: len(ledger.delivered()) >= EVENTS // 3, timeout=120, what="a third delivered")
        first.kill()
        ledger.report("two dispatchers, one killed", time.monotonic(), faults=1)
    finally:
        stop_all(first, second)


def test_a_dispatcher_joining_mid_stream_sends_nothing_twice(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path
) -> None:
    """A rebalance: the first member finishes and commits what it gives up; the newcomer re-reads none of
    it, or finds it in the log."""
    ledger = Ledger(env, [receiver], webhooks(engine, receiver))
    receiver.plan("/w0", then=(0.01, 200))
    group = env.with_(retry_schedule=PATIENT, max_in_flight=50)
    ledger.publish([event(number) for number in range(EVENTS)])
    first = started("dispatcher", group, tmp_path / "d1.log")
    second = None
    try:
        wait_until(lambda: len(ledger.delivered()) >= EVENTS // 3, timeout=120, what="a third delivered")
        second = started("dispatcher", group, tmp_path / "d2.log")
        wait_until(lambda: "revoked" in first.output(), what="the first member to give partitions up")
        assert ledger.report("a second dispatcher joins (rebalance)", time.monotonic()) == 0
    finally:
        stop_all(first, *([second] if second else []))


MALFORMED = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"[]", b"null", b"42", b'"text"', b"{}"]),
    st.dictionaries(st.text(max_size=10), st.integers() | st.text(max_size=10), max_size=6).map(
        lambda value: json.dumps(value).encode()
    ),
    st.builds(
        lambda name, asset: json.dumps(
            {
                "event": name,
                "timestamp": "2026-11-28T12:00:00+00:00",
                "source": "x",
                "asset_id": asset,
                "asset": {},
                "data": {},
            }
        ).encode(),
        st.text(max_size=20),
        st.one_of(st.none(), st.text(max_size=5), st.floats(allow_nan=False)),
    ),
)


def _invalid(raw: bytes) -> bool:
    try:
        parse_event(raw)
    except InvalidEventError:
        return True
    return False


@settings(
    max_examples=1,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(bad=st.lists(MALFORMED.filter(_invalid), min_size=40, max_size=40))
def test_generated_malformed_records_all_reach_the_dead_letter_topic(
    env: TestEnv, engine: Engine, receiver: Receiver, tmp_path: Path, bad: list[bytes]
) -> None:
    ledger = Ledger(env, [receiver], webhooks(engine, receiver))
    mixed = [event(number) for number in range(EVENTS // 3)] + bad
    random.Random(3).shuffle(mixed)
    ledger.publish(mixed)
    process = started("dispatcher", env, tmp_path / "dispatcher.log")
    try:
        ledger.report("generated malformed records", time.monotonic())
        wait_until(lambda: _invalid_letters(env) >= len(bad), what="every malformed record in the DLQ")
        assert _invalid_letters(env) == len(bad)
    finally:
        stop_all(process)


def _invalid_letters(env: TestEnv) -> int:
    settings_ = env.settings()
    topic = settings_.dlq_topic
    with MetadataReader(settings_) as reader:
        marks = reader.watermarks(topic, reader.partitions(topic))
    count = 0
    for record in scan(
        settings_,
        topic,
        {p: low for p, (low, _) in marks.items()},
        {p: high for p, (_, high) in marks.items()},
    ):
        letter = DeadLetter.model_validate_json(header_value(record.headers(), DEAD_LETTER_HEADER) or b"")
        count += letter.kind == "invalid-event" and bool(letter.reason)
    return count
