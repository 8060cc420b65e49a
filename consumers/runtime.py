"""The at-least-once consumer runtime shared by the dispatcher, the retrier and the projector.

One thread owns the confluent-kafka consumer (every call to it, rebalance callbacks included, happens
there); the asyncio loop runs the handler's work. The contract:

- records are handed to ``Handler.schedule`` in partition order with a ``done`` callback, which the
  handler calls once every effect of the record is durable (no future per record: this is the hot path),
  or it returns ``Defer(until)``;
- a record's offset is stored only when its work and the work of every earlier record of its partition
  finished (``enable.auto.offset.store=false``; librdkafka commits stored offsets every 100 ms);
- ``Defer`` pauses the partition and seeks back to the record, so it is read again when due: the head of
  a retry tier waits without sleeping in the poll loop. The wake-up timer starts only once the seek is
  done, so no record fetched before the seek can be taken in after it;
- at most ``max_in_flight`` records are in progress; when that many are, fetching waits for room, and
  if none comes within ``FULL_WAIT`` seconds every partition is paused and the consumer keeps polling
  (staying in its group, never near ``max.poll.interval.ms``) until half of them finished;
- on revocation the revoked partitions' work is awaited (bounded) and their offsets committed; on
  shutdown every in-flight record is finished or left uncommitted, then the consumer closes;
- an exception from the handler, or ``done(error)``, is fatal: that record's offset is never stored, the
  runtime stops, and ``run`` raises it, so a restart re-reads the record.

Which records are taken, what is stored and what is paused are decided by the pure state machines of
``consumers.partitions``; this module runs them, the threads and the consumer, which comes from ``connect``
(``tests/test_runtime_states.py`` hands in a fake one).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from assethooks import metrics
from assethooks.completion import Done
from assethooks.kafka import (
    GroupMember,
    KafkaException,
    Record,
    TopicPartition,
    group_consumer,
    is_partition_end,
    nothing_to_commit,
)
from consumers.partitions import TP, PartitionState, Pauses

log = logging.getLogger(__name__)

MAX_BATCH = 500
POLL_TIMEOUT = 0.05  # also how long a queued command (store, pause, seek) may wait
# How long a full runtime waits for room before pausing its partitions. Pausing discards what librdkafka
# prefetched, so it is kept for long stalls (a slow endpoint holding the whole window).
FULL_WAIT = 5.0


@dataclass(frozen=True)
class Defer:
    """Read this record again at ``until`` (unix seconds): it is not due yet."""

    until: float


class Handler(Protocol):
    """What a consumer group does with each record (``assigned`` is told of each new assignment first)."""

    def assigned(self, partitions: list[TP]) -> None:
        """Partitions (topic, partition) now assigned to this member; their records follow."""
        ...

    def schedule(self, record: Record, done: Done) -> Defer | None:
        """Start the record's work and call ``done(None)`` once all its effects are durable (``done(error)``
        when they cannot be), possibly before returning; or return ``Defer`` when it must wait (then never
        call ``done``). Called in partition order."""
        ...


@dataclass(eq=False)
class _Partition(PartitionState):
    """One assignment of one partition (``consumers.partitions``), and an event set while it is idle."""

    drained: asyncio.Event = field(default_factory=asyncio.Event)

    def settle(self) -> None:
        """After its work changed: say when none is left."""
        if self.idle:
            self.drained.set()


Command = Callable[[GroupMember], None]


class ConsumerRuntime:
    """Runs ``handler`` over ``topics`` as a member of a consumer group, at least once."""

    def __init__(
        self,
        config: dict[str, Any],
        topics: Sequence[str],
        handler: Handler,
        *,
        max_in_flight: int,
        shutdown_timeout: float,
        clock: Callable[[], float] = time.time,
        connect: Callable[[dict[str, Any]], GroupMember] = group_consumer,
        hurry: Callable[[bool], None] = lambda _on: None,
        owned: Callable[[Collection[TP]], None] = lambda _tps: None,
    ) -> None:
        group = str(config.get("group.id", ""))
        metrics.IN_FLIGHT.labels(group).set_function(lambda: self.in_flight)
        self._config = config
        self._topics = list(topics)
        self._handler = handler
        self._max_in_flight = max_in_flight
        self._shutdown_timeout = shutdown_timeout
        self._clock = clock
        self._connect = connect
        self._hurry = hurry  # told while a stop or a revocation waits for the work (writers flush at once)
        self._owned = owned  # told every partition owned after each assignment and revocation
        self._parts: dict[TP, _Partition] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        # Records in flight are ``_taken - _finished``: each counter has one writer (the consumer thread,
        # the loop), so neither needs a lock; the consumer thread, when it waits for room, says so in
        # ``_waiting`` and the loop wakes it through ``_room``.
        self._room = threading.Condition()
        self._taken = 0
        self._finished = 0
        self._waiting = False
        self._lock = threading.Lock()
        self._stores: dict[TP, int] = {}
        self._commands: list[tuple[_Partition | None, Command]] = []
        self._pauses = Pauses()  # consumer-thread state: what is paused and why
        self._stopping = threading.Event()
        self._drained = threading.Event()
        self._stop = asyncio.Event()
        self._fatal: BaseException | None = None

    @property
    def in_flight(self) -> int:
        """Records taken in and not finished."""
        return self._taken - self._finished

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set (or a fatal error), then finish in-flight work and close."""
        self._loop = asyncio.get_running_loop()
        pump = threading.Thread(target=self._pump, name="consumer", daemon=True)
        pump.start()
        stop_task = asyncio.create_task(stop.wait())
        fatal_task = asyncio.create_task(self._stop.wait())
        await asyncio.wait({stop_task, fatal_task}, return_when=asyncio.FIRST_COMPLETED)
        stop_task.cancel()
        fatal_task.cancel()
        self._stopping.set()
        with self._room:
            self._room.notify_all()
        await self._finish(list(self._parts.values()))
        for part in self._parts.values():
            self._queue_store(part)
        self._drained.set()
        await asyncio.to_thread(pump.join)
        if self._fatal is not None:
            raise self._fatal

    # -- the consumer thread ------------------------------------------------------------------------

    def _pump(self) -> None:
        consumer: GroupMember | None = None
        try:
            consumer = self._connect(self._config)
            consumer.subscribe(
                self._topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
            while not self._stopping.is_set():
                self._run_commands(consumer)
                self._throttle(consumer)
                if self._pauses.throttled:
                    self._wait_for_room(self._has_room, POLL_TIMEOUT)
                    self._hand_over(consumer.poll(0))  # serves callbacks; partitions are paused
                else:
                    self._fetch(consumer)
            while not self._drained.wait(POLL_TIMEOUT):
                self._run_commands(consumer)
            self._run_commands(consumer)
        except BaseException as exc:  # report to the loop; the thread must not die silently
            self._call_loop(self._fail, exc)
            self._drained.wait()
        finally:
            if consumer is not None:
                try:
                    consumer.close()  # revokes (committing stored offsets) and leaves the group
                except (KafkaException, RuntimeError) as exc:
                    log.warning("consumer did not close cleanly: %s", exc)

    def _has_room(self) -> bool:
        return self.in_flight <= self._max_in_flight // 2 or self._stopping.is_set()

    def _throttle(self, consumer: GroupMember) -> None:
        """Wait a little when full; pause everything when that is not enough; resume (all but the
        deferred) once half the work is done."""
        if not self._pauses.throttled and self.in_flight >= self._max_in_flight:
            # Wait for a quarter of the window, not one slot: fetching in batches keeps the two threads
            # from handing records over one by one.
            refill = self._max_in_flight - max(1, self._max_in_flight // 4)
            has_room = self._wait_for_room(
                lambda: self.in_flight <= refill or self._stopping.is_set(), FULL_WAIT
            )
            if not has_room:
                consumer.pause(_where(self._pauses.throttle(_tps(consumer.assignment()))))
        elif self._pauses.throttled and self._has_room():
            consumer.resume(_where(self._pauses.unthrottle(_tps(consumer.assignment()))))

    def _fetch(self, consumer: GroupMember) -> None:
        first = consumer.poll(POLL_TIMEOUT)  # returns as soon as one record is there
        if first is None:
            return
        room = max(1, self._max_in_flight - self.in_flight)
        batch = [first]
        if room > 1:
            batch += consumer.consume(min(room, MAX_BATCH) - 1, 0)  # whatever else is already fetched
        self._hand_over(*batch)

    def _hand_over(self, *batch: Record | None) -> None:
        records = [record for record in batch if record is not None and not self._is_error(record)]
        if records:
            self._taken += len(records)
            self._call_loop(self._accept, records)

    @staticmethod
    def _is_error(record: Record) -> bool:
        error = record.error()
        if error is None:
            return False
        if error.fatal():
            raise KafkaException(error)
        if not is_partition_end(error):
            log.warning("consumer: %s", error.str())
        return True

    def _run_commands(self, consumer: GroupMember) -> None:
        with self._lock:
            commands, self._commands = self._commands, []
            stores, self._stores = self._stores, {}
        for part, command in commands:
            if part is not None and not part.current:
                continue  # its partition was revoked or lost meanwhile
            try:
                command(consumer)
            except KafkaException as exc:
                log.warning("consumer command failed: %s", exc)
        if stores:
            self._store(consumer, stores)

    @staticmethod
    def _store(consumer: GroupMember, stores: dict[TP, int]) -> None:
        offsets = [TopicPartition(topic, partition, offset) for (topic, partition), offset in stores.items()]
        try:
            consumer.store_offsets(offsets=offsets)
        except KafkaException as exc:  # e.g. a partition lost meanwhile: its records will be re-read
            log.warning("offsets not stored: %s", exc)

    def _on_assign(self, _consumer: GroupMember, partitions: list[TopicPartition]) -> None:
        tps = _tps(partitions)
        self._wait_loop(self._assign(tps))
        log.info("assigned %s", _names(tps))

        def settle(consumer: GroupMember) -> None:  # runs once the assignment is in place
            pause, resume = self._pauses.assigned(tps)  # a partition may come back still paused
            consumer.pause(_where(pause))
            consumer.resume(_where(resume))

        with self._lock:
            self._commands.append((None, settle))

    def _on_revoke(self, consumer: GroupMember, partitions: list[TopicPartition]) -> None:
        tps = _tps(partitions)
        self._pauses.forget(tps)
        final = self._wait_loop(self._revoke(tps, finish=True))
        self._run_commands(consumer)
        if final:
            self._store(consumer, final)
            try:
                consumer.commit(asynchronous=False)
            except KafkaException as exc:
                if not nothing_to_commit(exc):
                    log.warning("commit on revocation failed: %s", exc)
        log.info("revoked %s", _names(tps))

    def _on_lost(self, _consumer: GroupMember, partitions: list[TopicPartition]) -> None:
        tps = _tps(partitions)
        self._pauses.forget(tps)
        self._wait_loop(self._revoke(tps, finish=False))
        log.warning("lost %s: their unfinished records will be read again", _names(tps))

    def _call_loop(self, function: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(function, *args)

    def _wait_loop(self, coroutine: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    # -- the event loop -----------------------------------------------------------------------------

    async def _assign(self, tps: list[TP]) -> None:
        with self._lock:
            for tp in tps:
                self._stores.pop(tp, None)
        for tp in tps:
            self._parts[tp] = _Partition(tp)
        self._owned(self._parts.keys())
        self._handler.assigned(tps)

    async def _revoke(self, tps: list[TP], *, finish: bool) -> dict[TP, int]:
        parts = [part for part in (self._parts.pop(tp, None) for tp in tps) if part is not None]
        self._owned(self._parts.keys())
        for part in parts:
            part.revoke()  # work finishing from now on stores nothing itself
        with self._lock:
            for tp in tps:
                self._stores.pop(tp, None)
        if not finish:
            return {}
        if not self._stopping.is_set():  # at shutdown, run() has already waited for the work
            await self._finish(parts)
        return {part.tp: part.tracker.committable for part in parts if part.tracker.committable is not None}

    async def _finish(self, parts: list[_Partition]) -> None:
        busy = [part for part in parts if not part.idle]
        if not busy:
            return
        waiting = [asyncio.ensure_future(part.drained.wait()) for part in busy]
        self._hurry(True)
        try:
            _done, pending = await asyncio.wait(waiting, timeout=self._shutdown_timeout)
        finally:
            self._hurry(False)
        for wait in pending:
            wait.cancel()
        unfinished = sum(part.working for part in busy)
        if unfinished:
            log.warning(
                "%d records unfinished after %.0fs; they will be read again",
                unfinished,
                self._shutdown_timeout,
            )

    def _accept(self, records: list[Record]) -> None:
        closing = self._stopping.is_set() or self._stop.is_set()
        parts, schedule = self._parts, self._handler.schedule
        for record in records:
            topic, partition, offset = record.topic(), record.partition(), record.offset()
            part = parts.get((topic, partition))  # type: ignore[arg-type]
            if part is None or closing or not part.take(offset):  # type: ignore[arg-type]
                self._release()  # not ours any more, to be read again after a Defer, or a stale re-read
                continue
            assert offset is not None
            part.drained.clear()
            try:
                deferred = schedule(record, functools.partial(self._complete, part, offset))
            except Exception as exc:  # taken in and never done: no later offset can be committed
                part.abandon()
                part.settle()
                self._release()
                self._fail(exc)
                continue
            if deferred is not None:
                part.put_back(offset)
                part.settle()
                self._release()
                self._defer(part, offset, deferred.until)

    def _complete(self, part: _Partition, offset: int, error: BaseException | None) -> None:
        self._release()
        if error is not None:
            part.fail()
            part.settle()
            self._fail(error)
            return
        store = part.finish(offset)
        part.settle()
        if store is not None:
            with self._lock:
                self._stores[part.tp] = store

    def _queue_store(self, part: _Partition) -> None:
        if part.current and part.tracker.committable is not None:
            with self._lock:
                self._stores[part.tp] = part.tracker.committable

    def _defer(self, part: _Partition, offset: int, until: float) -> None:
        """Pause the partition at ``offset`` until ``until``; the timer starts once the seek is done."""

        def hold(consumer: GroupMember) -> None:
            consumer.pause(_where(self._pauses.defer(part.tp)))
            consumer.seek(TopicPartition(part.tp[0], part.tp[1], offset))
            self._call_loop(start_timer)

        def start_timer() -> None:
            assert self._loop is not None
            self._loop.call_later(max(0.0, until - self._clock()), wake)

        def wake() -> None:
            if part.wake():
                with self._lock:
                    self._commands.append((part, release))

        def release(consumer: GroupMember) -> None:
            consumer.resume(_where(self._pauses.wake(part.tp)))

        with self._lock:
            self._commands.append((part, hold))

    def _release(self) -> None:
        self._finished += 1
        if self._waiting:
            with self._room:
                self._room.notify()

    def _wait_for_room(self, ready: Callable[[], bool], timeout: float) -> bool:
        """In the consumer thread: wait until ``ready()`` (the loop finishing records), at most
        ``timeout`` seconds."""
        with self._room:
            self._waiting = True
            try:
                return self._room.wait_for(ready, timeout)
            finally:
                self._waiting = False

    def _fail(self, exc: BaseException) -> None:
        if self._fatal is None:
            log.error("stopping: %s", exc, exc_info=exc)
            self._fatal = exc
        self._stop.set()


def _tps(partitions: list[TopicPartition]) -> list[TP]:
    return [(tp.topic, tp.partition) for tp in partitions]


def _where(tps: list[TP]) -> list[TopicPartition]:
    return [TopicPartition(topic, partition) for topic, partition in tps]


def _names(tps: list[TP]) -> str:
    return ", ".join(f"{topic}[{partition}]" for topic, partition in sorted(tps)) or "nothing"
