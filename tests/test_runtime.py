"""The at-least-once consumer runtime against the real broker, with handlers injected by the tests."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest
from confluent_kafka import Producer

from assethooks.completion import Done, follow
from assethooks.kafka import FETCH_QUEUE_BACKOFF_MS, Record, consumer_config, coordinates, ensure_topics
from consumers.runtime import ConsumerRuntime, Defer
from tests.conftest import TestEnv
from tests.support import committed_offsets


class Handler:
    """A handler made of a function returning a record's work (or ``Defer``), recording what it processed."""

    def __init__(self, schedule: Callable[[Handler, Record], Awaitable[None] | Defer]) -> None:
        self._schedule = schedule
        self.done: Counter[tuple[int, int]] = Counter()

    def assigned(self, partitions: list[tuple[str, int]]) -> None:
        pass

    def schedule(self, record: Record, done: Done) -> Defer | None:
        work = self._schedule(self, record)
        if isinstance(work, Defer):
            return work
        follow(work, done)
        return None

    def finish(self, record: Record) -> Awaitable[None]:
        async def work() -> None:
            _topic, partition, offset = coordinates(record)
            self.done[(partition, offset)] += 1

        return work()


def run_until(
    env: TestEnv, handler: Handler, until: Callable[[], bool], *, max_in_flight: int = 100, **config: object
) -> None:
    """Run the runtime on the test's source topic until ``until()`` holds (60 s at most), then stop it."""

    async def main() -> None:
        stop = asyncio.Event()
        settings = env.settings()
        runtime = ConsumerRuntime(
            {**consumer_config(settings, "test", settings.dispatcher_group), **config},
            [settings.source_topic],
            handler,
            max_in_flight=max_in_flight,
            shutdown_timeout=10,
        )
        task = asyncio.create_task(runtime.run(stop))
        deadline = time.monotonic() + 60
        while not until() and time.monotonic() < deadline and not task.done():
            await asyncio.sleep(0.05)
        stop.set()
        await task

    asyncio.run(main())


def produce(env: TestEnv, count: int, *, pace: float = 0.0, size: int = 1) -> None:
    producer = Producer({"bootstrap.servers": env["kafka_bootstrap"], "linger.ms": 0})
    for number in range(count):
        producer.produce(env["source_topic"], value=b"x" * size, partition=number % 3)
        producer.poll(0)
        if pace:
            time.sleep(pace)
    assert producer.flush(30) == 0


def committed(env: TestEnv) -> dict[int, int]:
    offsets = committed_offsets(env["kafka_bootstrap"], env["dispatcher_group"], env["source_topic"])
    return {partition: offset for partition, (offset, _end) in offsets.items()}


@pytest.fixture
def topics(env: TestEnv) -> None:
    ensure_topics(env.settings())


@pytest.mark.usefixtures("topics")
def test_deferred_records_under_steady_traffic_are_all_processed_before_their_offsets_commit(
    env: TestEnv,
) -> None:
    """Every third record is deferred once by a few milliseconds while records keep arriving."""
    deferred: set[tuple[int, int]] = set()

    def schedule(handler: Handler, record: Record) -> Awaitable[None] | Defer:
        _topic, partition, offset = coordinates(record)
        if offset % 3 == 0 and (partition, offset) not in deferred:
            deferred.add((partition, offset))
            return Defer(time.time() + random.random() * 0.002)
        return handler.finish(record)

    handler = Handler(schedule)
    total = 600
    feeder = threading.Thread(target=produce, args=(env, total), kwargs={"pace": 0.003})
    feeder.start()
    try:
        run_until(env, handler, lambda: len(handler.done) == total and not feeder.is_alive())
    finally:
        feeder.join()
    assert len(handler.done) == total
    done = set(handler.done)
    for partition, offset in committed(env).items():
        assert all((partition, below) in done for below in range(offset))


@pytest.mark.usefixtures("topics")
def test_a_handler_error_stops_the_runtime_and_commits_nothing_past_its_record(env: TestEnv) -> None:
    produce(env, 30)

    def schedule(handler: Handler, record: Record) -> Awaitable[None] | Defer:
        _topic, partition, offset = coordinates(record)
        if (partition, offset) == (1, 5):
            raise RuntimeError("a handler bug")
        return handler.finish(record)

    handler = Handler(schedule)
    with pytest.raises(RuntimeError, match="a handler bug"):
        run_until(env, handler, lambda: False)
    assert committed(env)[1] <= 5


@pytest.mark.usefixtures("topics")
def test_a_full_runtime_keeps_polling_and_stays_in_its_group(env: TestEnv) -> None:
    """Each record takes longer than max.poll.interval.ms: the consumer must still poll while full."""
    produce(env, 3)

    def schedule(handler: Handler, record: Record) -> Awaitable[None] | Defer:
        async def slow() -> None:
            await asyncio.sleep(10)
            await handler.finish(record)

        return slow()

    handler = Handler(schedule)
    run_until(
        env,
        handler,
        lambda: len(handler.done) == 3 and sum(max(0, offset) for offset in committed(env).values()) == 3,
        max_in_flight=3,
        **{"max.poll.interval.ms": 7000, "session.timeout.ms": 6000, "heartbeat.interval.ms": 1500},
    )
    assert len(handler.done) == 3
    assert set(handler.done.values()) == {1}  # no rebalance made any record run twice


class Lines(logging.Handler):
    """Keeps the lines librdkafka logs."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.mark.usefixtures("topics")
def test_draining_an_uncompressed_topic_is_never_paced_by_a_long_fetch_back_off(env: TestEnv) -> None:
    """librdkafka backs off the next fetch of a partition whose pre-fetch queue is full. With its default
    (1 s), draining an uncompressed topic waited a second again and again, a core mostly idle. The drain
    must fill the queue (else this would prove nothing), and no back-off may be longer than ours."""
    total = 6000
    produce(env, total, size=1000)  # uncompressed ~1 KB records: 6 MB against a 1 MB queue
    seen = Lines()
    librdkafka = logging.Logger("test-librdkafka")  # not registered: only this test reads it
    librdkafka.addHandler(seen)
    handler = Handler(lambda handler, record: handler.finish(record))
    run_until(env, handler, lambda: len(handler.done) == total, debug="fetch", logger=librdkafka)
    assert len(handler.done) == total
    backoffs = [
        int(found.group(1))
        for line in seen.lines
        if (found := re.search(r"Fetch backoff for (\d+)ms: Local: Queue full", line))
    ]
    assert backoffs, "the pre-fetch queue never filled: nothing was tested"
    assert max(backoffs) <= FETCH_QUEUE_BACKOFF_MS
