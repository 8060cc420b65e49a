"""The consumer runtime's partition handling against a fake consumer (a unit test of the runtime's logic:
the broker's side is an in-memory log behind ``assethooks.kafka.Consumer``): revocation while deferred, loss
while work is in flight, stale re-reads after a seek, throttle and resume, shutdown with work in flight."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import pytest

from assethooks.completion import Done
from assethooks.kafka import KafkaException, Record, TopicPartition
from consumers import runtime
from consumers.runtime import ConsumerRuntime, Defer

TOPIC = "events"
TP = tuple[str, int]


class FakeRecord:
    """A record of the fake log (the ``Record`` protocol)."""

    def __init__(self, partition: int, offset: int) -> None:
        self._partition, self._offset = partition, offset

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return None

    def value(self) -> bytes:
        return b"%d/%d" % (self._partition, self._offset)

    def headers(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (0, 0)

    def error(self) -> None:
        return None


class FakeConsumer:
    """One group member over an in-memory topic. Rebalances asked for by the test run inside ``poll``, in
    the consumer's thread, as librdkafka runs its callbacks. Storing an offset of a partition not assigned
    fails, as it does in librdkafka; stored offsets are committed at every poll (auto-commit)."""

    def __init__(self, lengths: dict[int, int]) -> None:
        self.lengths = lengths  # records per partition
        self.committed: dict[int, int] = {}
        self.stores: list[tuple[int, int]] = []  # every (partition, offset) stored, in order
        self.refused: list[tuple[int, int]] = []  # stores of partitions not assigned
        self.resumes: list[set[int]] = []  # every resume call
        self.paused: set[int] = set()
        self._positions: dict[int, int] = {}
        self._rebalances: deque[tuple[str, list[int]]] = deque()
        self._callbacks: dict[str, Callable[[Any, list[TopicPartition]], None]] = {}
        self._stored: dict[int, int] = {}
        self._lock = threading.Lock()
        self.closed = threading.Event()

    # -- what the test does ---------------------------------------------------------------------------

    def rebalance(self, kind: Literal["assign", "revoke", "lose"], partitions: Sequence[int]) -> None:
        with self._lock:
            self._rebalances.append((kind, list(partitions)))

    def assigned(self) -> set[int]:
        with self._lock:
            return set(self._positions)

    def is_paused(self, partition: int) -> bool:
        with self._lock:
            return partition in self.paused

    # -- the Consumer protocol ------------------------------------------------------------------------

    def subscribe(
        self, topics: list[str], on_assign: Any = None, on_revoke: Any = None, on_lost: Any = None
    ) -> None:
        self._callbacks = {"assign": on_assign, "revoke": on_revoke, "lose": on_lost}

    def poll(self, timeout: float = -1) -> Record | None:
        self.commit(asynchronous=False)  # auto-commit, as often as the consumer polls
        self._serve_rebalances()
        found = self._next(1)
        if not found:
            time.sleep(min(timeout, 0.002))  # librdkafka would wait for a fetch
            return None
        return found[0]

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Record]:
        return self._next(num_messages)

    def assignment(self) -> list[TopicPartition]:
        with self._lock:
            return [TopicPartition(TOPIC, partition) for partition in self._positions]

    def pause(self, partitions: list[TopicPartition]) -> None:
        with self._lock:
            self.paused.update(tp.partition for tp in partitions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        with self._lock:
            self.paused.difference_update(tp.partition for tp in partitions)
            self.resumes.append({tp.partition for tp in partitions})

    def seek(self, partition: TopicPartition) -> None:
        with self._lock:
            self._positions[partition.partition] = partition.offset

    def store_offsets(self, *, offsets: list[TopicPartition]) -> None:
        with self._lock:
            for tp in offsets:
                if tp.partition not in self._positions:
                    self.refused.append((tp.partition, tp.offset))
                    raise KafkaException(f"partition {tp.partition} is not assigned")
                self._stored[tp.partition] = tp.offset
                self.stores.append((tp.partition, tp.offset))

    def commit(self, *, asynchronous: Literal[False]) -> list[TopicPartition]:
        with self._lock:
            self.committed.update(self._stored)
            return []

    def close(self) -> None:
        with self._lock:
            partitions = list(self._positions)
        if partitions:
            self._callbacks["revoke"](self, [TopicPartition(TOPIC, p) for p in partitions])
        self.commit(asynchronous=False)
        with self._lock:
            self._positions.clear()
        self.closed.set()

    # -- inside ---------------------------------------------------------------------------------------

    def _serve_rebalances(self) -> None:
        while True:
            with self._lock:
                if not self._rebalances:
                    return
                kind, partitions = self._rebalances.popleft()
                if kind == "assign":
                    for partition in partitions:
                        self._positions[partition] = self.committed.get(partition, 0)
            self._callbacks[kind](self, [TopicPartition(TOPIC, partition) for partition in partitions])
            if kind != "assign":
                with self._lock:
                    for partition in partitions:
                        self._positions.pop(partition, None)
                        self._stored.pop(partition, None)

    def _next(self, count: int) -> list[Record]:
        """Up to ``count`` records, one partition after the other in turn (as fetches interleave)."""
        found: list[Record] = []
        with self._lock:
            while len(found) < count:
                ready = [
                    partition
                    for partition, position in sorted(self._positions.items())
                    if partition not in self.paused and position < self.lengths[partition]
                ]
                for partition in ready[: count - len(found)]:
                    found.append(FakeRecord(partition, self._positions[partition]))
                    self._positions[partition] += 1
                if not ready:
                    break
        return found


class Holding:
    """A handler that defers what ``defer`` says and holds every ``done`` for the test to call."""

    def __init__(self, defer: Callable[[int, int, int], float | None] = lambda p, o, seen: None) -> None:
        self.seen: list[tuple[int, int]] = []  # (partition, offset) scheduled, deferred ones included
        self.held: dict[tuple[int, int], Done] = {}
        self._defer = defer

    def assigned(self, partitions: list[tuple[str, int]]) -> None:
        pass

    def schedule(self, record: Record, done: Done) -> Defer | None:
        where = (record.partition() or 0, record.offset() or 0)
        until = self._defer(*where, self.seen.count(where))
        self.seen.append(where)
        if until is not None:
            return Defer(until)
        self.held[where] = done
        return None

    def finish(self, *where: tuple[int, int]) -> None:
        for each in where:
            self.held.pop(each)(None)

    def finish_all(self) -> None:
        self.finish(*sorted(self.held))


async def until(check: Callable[[], object], what: Any, timeout: float = 10.0) -> None:
    """Wait on the loop until ``check()`` holds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        await asyncio.sleep(0.005)


def run(
    consumer: FakeConsumer,
    handler: Holding,
    script: Callable[[asyncio.Event], Awaitable[None]],
    *,
    max_in_flight: int = 100,
    shutdown_timeout: float = 5.0,
) -> None:
    """Run the runtime with ``consumer`` while ``script`` drives it; ``script`` sets the stop event."""

    async def main() -> None:
        stop = asyncio.Event()
        member = ConsumerRuntime(
            {"group.id": "fake"},
            [TOPIC],
            handler,
            max_in_flight=max_in_flight,
            shutdown_timeout=shutdown_timeout,
            connect=lambda _config: consumer,
        )
        running = asyncio.create_task(member.run(stop))
        await script(stop)
        await asyncio.wait_for(running, 30)

    asyncio.run(main())


def test_a_deferred_head_is_read_again_and_what_was_fetched_behind_it_is_taken_once() -> None:
    consumer = FakeConsumer({0: 3})
    handler = Holding(defer=lambda p, offset, seen: time.time() + 0.05 if (offset, seen) == (0, 0) else None)

    async def script(stop: asyncio.Event) -> None:
        consumer.rebalance("assign", [0])
        await until(lambda: len(handler.held) == 3, "the three records after the deferral")
        handler.finish_all()
        await until(lambda: (0, 3) in consumer.stores, "offset 3 stored")
        stop.set()

    run(consumer, handler, script)
    assert handler.seen == [(0, 0), (0, 0), (0, 1), (0, 2)]  # 1 and 2, fetched with 0, were skipped
    assert consumer.committed == {0: 3}


def test_a_partition_revoked_while_deferred_is_read_again_from_its_head_once_assigned_again() -> None:
    consumer = FakeConsumer({0: 2, 1: 2})
    handler = Holding(defer=lambda *at: time.time() + 3600 if at == (0, 0, 0) else None)

    async def script(stop: asyncio.Event) -> None:
        consumer.rebalance("assign", [0, 1])
        await until(lambda: len(handler.held) == 2 and consumer.is_paused(0), "partition 0 paused, 1 read")
        handler.finish_all()
        consumer.rebalance("revoke", [0])
        await until(lambda: consumer.assigned() == {1}, "the revocation")
        consumer.rebalance("assign", [0])  # back, still paused from before in librdkafka's view
        await until(lambda: len(handler.held) == 2, "partition 0 read again from its head")
        assert not consumer.is_paused(0)
        handler.finish_all()
        await until(lambda: consumer.stores[-1:] == [(0, 2)], "partition 0 stored")
        stop.set()

    run(consumer, handler, script)
    assert [where for where in handler.seen if where[0] == 0] == [(0, 0), (0, 0), (0, 1)]
    assert consumer.committed == {0: 2, 1: 2}


def test_work_finishing_after_its_partition_was_lost_stores_nothing() -> None:
    consumer = FakeConsumer({0: 3})
    handler = Holding()

    async def script(stop: asyncio.Event) -> None:
        consumer.rebalance("assign", [0])
        await until(lambda: len(handler.held) == 3, "three records in flight")
        handler.finish((0, 0))
        await until(lambda: consumer.stores == [(0, 1)], "offset 1 stored")
        consumer.rebalance("lose", [0])
        await until(lambda: not consumer.assigned(), "the loss")
        handler.finish_all()  # the next owner reads them again: nothing may be stored for them here
        consumer.rebalance("assign", [0])
        await until(lambda: len(handler.held) == 2, "offsets 1 and 2 read again")
        handler.finish_all()
        await until(lambda: consumer.stores[-1:] == [(0, 3)], "offset 3 stored")
        stop.set()

    run(consumer, handler, script)
    assert consumer.refused == []  # nothing was stored for the lost assignment
    assert consumer.committed == {0: 3}
    assert handler.seen == [(0, 0), (0, 1), (0, 2), (0, 1), (0, 2)]


def test_a_full_runtime_pauses_everything_then_resumes_all_but_the_deferred(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime, "FULL_WAIT", 0.05)
    consumer = FakeConsumer({0: 10, 1: 10, 2: 1})
    handler = Holding(defer=lambda p, offset, seen: time.time() + 3600 if p == 2 else None)

    async def script(stop: asyncio.Event) -> None:
        consumer.rebalance("assign", [0, 1, 2])
        await until(lambda: consumer.paused == {0, 1, 2} and len(handler.held) == 4, "all paused when full")
        throttled = len(consumer.resumes)
        handler.finish(*sorted(handler.held)[:2])  # half the window
        await until(lambda: {0, 1} in consumer.resumes[throttled:], "all resumed but the deferred partition")
        assert all(2 not in resumed for resumed in consumer.resumes[throttled:])
        while len(handler.seen) < 21:
            handler.finish_all()
            await until(lambda: handler.held or len(handler.seen) >= 21, "more records")
        handler.finish_all()
        stop.set()

    run(consumer, handler, script, max_in_flight=4)
    assert sorted(set(handler.seen)) == [(p, o) for p in (0, 1) for o in range(10)] + [(2, 0)]
    assert consumer.committed == {0: 10, 1: 10}


def test_shutdown_waits_for_work_in_flight_and_commits_only_what_finished() -> None:
    consumer = FakeConsumer({0: 3})
    handler = Holding()

    async def script(stop: asyncio.Event) -> None:
        consumer.rebalance("assign", [0])
        await until(lambda: len(handler.held) == 3, "three records in flight")
        stop.set()
        await asyncio.sleep(0)
        handler.finish((0, 0), (0, 1))  # offset 2 never finishes: read again after the restart

    run(consumer, handler, script, shutdown_timeout=0.5)
    assert consumer.closed.is_set()
    assert consumer.committed == {0: 2}
