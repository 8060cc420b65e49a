"""The at-least-once consumer runtime shared by the dispatcher and the retrier.

One thread owns the confluent-kafka consumer (every call to it, rebalance callbacks included, happens
there); the asyncio loop runs the handler's work. The contract:

- records are handed to ``Handler.schedule`` in partition order; it returns the work for a record (an
  awaitable that finishes once every effect of the record is durable) or ``Defer(until)``;
- a record's offset is stored only when its work and the work of every earlier record of its partition
  finished (``enable.auto.offset.store=false``; librdkafka commits stored offsets every second);
- ``Defer`` pauses the partition and seeks back to the record, so it is read again when due: the head of
  a retry tier waits without sleeping in the poll loop. The wake-up timer starts only once the seek is
  done, so no record fetched before the seek can be taken in after it;
- at most ``max_in_flight`` records are in progress; when that many are, fetching waits for room, and
  if none comes within ``FULL_WAIT`` seconds every partition is paused and the consumer keeps polling
  (staying in its group, never near ``max.poll.interval.ms``) until half of them finished;
- on revocation the revoked partitions' work is awaited (bounded) and their offsets committed; on
  shutdown every in-flight record is finished or left uncommitted, then the consumer closes;
- an exception from the handler is fatal: that record's offset is never stored, the runtime stops, and
  ``run`` raises it, so a restart re-reads the record.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from assethooks import metrics
from consumers.offsets import OffsetTracker

log = logging.getLogger(__name__)

TP = tuple[str, int]
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
    """What a consumer group does with each record."""

    def schedule(self, record: Message) -> Awaitable[None] | Defer:
        """Return the record's work, or ``Defer`` when it must wait; called in partition order."""
        ...


@dataclass(eq=False)
class _Partition:
    """The state of one assigned partition; a new object for every assignment."""

    tp: TP
    tracker: OffsetTracker = field(default_factory=OffsetTracker)
    work: set[asyncio.Future[None]] = field(default_factory=set)
    last_taken: int = -1  # the newest offset taken in; anything at or below it is a stale re-read
    deferred: bool = False
    current: bool = True

    @property
    def where(self) -> TopicPartition:
        """This partition, for consumer calls."""
        return TopicPartition(*self.tp)


Command = Callable[[Consumer], None]


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
    ) -> None:
        group = str(config.get("group.id", ""))
        metrics.IN_FLIGHT.labels(group).set_function(lambda: self._in_flight)
        self._config = config
        self._topics = list(topics)
        self._handler = handler
        self._max_in_flight = max_in_flight
        self._shutdown_timeout = shutdown_timeout
        self._clock = clock
        self._parts: dict[TP, _Partition] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._room = threading.Condition()
        self._in_flight = 0
        self._lock = threading.Lock()
        self._stores: dict[TP, int] = {}
        self._commands: list[tuple[_Partition | None, Command]] = []
        # Consumer-thread state: partitions paused by a Defer, and whether all are paused for room.
        self._deferred: set[TP] = set()
        self._throttled = False
        self._stopping = threading.Event()
        self._drained = threading.Event()
        self._stop = asyncio.Event()
        self._fatal: BaseException | None = None

    @property
    def in_flight(self) -> int:
        """Records taken in and not finished."""
        return self._in_flight

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
        consumer: Consumer | None = None
        try:
            consumer = Consumer(self._config)
            consumer.subscribe(
                self._topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
            while not self._stopping.is_set():
                self._run_commands(consumer)
                self._throttle(consumer)
                if self._throttled:
                    with self._room:
                        self._room.wait_for(self._has_room, POLL_TIMEOUT)
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
        return self._in_flight <= self._max_in_flight // 2 or self._stopping.is_set()

    def _throttle(self, consumer: Consumer) -> None:
        """Wait a little when full; pause everything when that is not enough; resume (all but the
        deferred) once half the work is done."""
        if not self._throttled and self._in_flight >= self._max_in_flight:
            # Wait for a quarter of the window, not one slot: fetching in batches keeps the two threads
            # from handing records over one by one.
            refill = self._max_in_flight - max(1, self._max_in_flight // 4)
            with self._room:
                has_room = self._room.wait_for(
                    lambda: self._in_flight <= refill or self._stopping.is_set(), FULL_WAIT
                )
            if not has_room:
                consumer.pause(consumer.assignment())
                self._throttled = True
        elif self._throttled and self._has_room():
            ready = [tp for tp in consumer.assignment() if (tp.topic, tp.partition) not in self._deferred]
            consumer.resume(ready)
            self._throttled = False

    def _fetch(self, consumer: Consumer) -> None:
        first = consumer.poll(POLL_TIMEOUT)  # returns as soon as one record is there
        if first is None:
            return
        room = max(1, self._max_in_flight - self._in_flight)
        batch = [first]
        if room > 1:
            batch += consumer.consume(min(room, MAX_BATCH) - 1, 0)  # whatever else is already fetched
        self._hand_over(*batch)

    def _hand_over(self, *batch: Message | None) -> None:
        records = [record for record in batch if record is not None and not self._is_error(record)]
        if records:
            with self._room:
                self._in_flight += len(records)
            self._call_loop(self._accept, records)

    @staticmethod
    def _is_error(record: Message) -> bool:
        error = record.error()
        if error is None:
            return False
        if error.fatal():
            raise KafkaException(error)
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("consumer: %s", error.str())
        return True

    def _run_commands(self, consumer: Consumer) -> None:
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
    def _store(consumer: Consumer, stores: dict[TP, int]) -> None:
        offsets = [TopicPartition(topic, partition, offset) for (topic, partition), offset in stores.items()]
        try:
            consumer.store_offsets(offsets=offsets)
        except KafkaException as exc:  # e.g. a partition lost meanwhile: its records will be re-read
            log.warning("offsets not stored: %s", exc)

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(tp.topic, tp.partition) for tp in partitions]
        self._wait_loop(self._assign(tps))
        log.info("assigned %s", _names(tps))

        def settle(consumer: Consumer) -> None:  # runs once the assignment is in place
            where = [TopicPartition(topic, partition) for topic, partition in tps]
            if self._throttled:
                consumer.pause(where)
            else:
                consumer.resume(where)  # a partition may come back still paused from before

        with self._lock:
            self._commands.append((None, settle))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(tp.topic, tp.partition) for tp in partitions]
        self._deferred.difference_update(tps)
        final = self._wait_loop(self._revoke(tps, finish=True))
        self._run_commands(consumer)
        if final:
            self._store(consumer, final)
            try:
                consumer.commit(asynchronous=False)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError._NO_OFFSET:
                    log.warning("commit on revocation failed: %s", exc)
        log.info("revoked %s", _names(tps))

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(tp.topic, tp.partition) for tp in partitions]
        self._deferred.difference_update(tps)
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

    async def _revoke(self, tps: list[TP], *, finish: bool) -> dict[TP, int]:
        parts = [part for part in (self._parts.pop(tp, None) for tp in tps) if part is not None]
        for part in parts:
            part.current = False
        with self._lock:
            for tp in tps:
                self._stores.pop(tp, None)
        if not finish:
            return {}
        if not self._stopping.is_set():  # at shutdown, run() has already waited for the work
            await self._finish(parts)
        return {part.tp: part.tracker.committable for part in parts if part.tracker.committable is not None}

    async def _finish(self, parts: list[_Partition]) -> None:
        pending = {work for part in parts for work in part.work}
        if not pending:
            return
        _done, unfinished = await asyncio.wait(pending, timeout=self._shutdown_timeout)
        if unfinished:
            log.warning(
                "%d records unfinished after %.0fs; they will be read again",
                len(unfinished),
                self._shutdown_timeout,
            )

    def _accept(self, records: list[Message]) -> None:
        assert self._loop is not None
        for record in records:
            topic, partition, offset = coordinates(record)
            part = self._parts.get((topic, partition))
            stale = part is None or part.deferred or offset <= part.last_taken
            if stale or self._stopping.is_set() or self._stop.is_set():
                self._release()  # not ours any more, to be read again after a Defer, or a stale re-read
                continue
            assert part is not None
            try:
                work = self._handler.schedule(record)
            except Exception as exc:
                part.tracker.add(offset)  # taken in and never done: no later offset can be committed
                part.last_taken = offset
                self._release()
                self._fail(exc)
                continue
            if isinstance(work, Defer):
                self._release()
                self._defer(part, offset, work.until)
                continue
            part.tracker.add(offset)
            part.last_taken = offset
            future = asyncio.ensure_future(work)  # a future as is; a coroutine becomes a task
            part.work.add(future)
            future.add_done_callback(functools.partial(self._complete, part, offset))

    def _complete(self, part: _Partition, offset: int, future: asyncio.Future[None]) -> None:
        part.work.discard(future)
        self._release()
        error = RuntimeError("work cancelled") if future.cancelled() else future.exception()
        if error is not None:
            self._fail(error)
            return
        if part.tracker.done(offset) is not None and part.current:
            self._queue_store(part)

    def _queue_store(self, part: _Partition) -> None:
        if part.current and part.tracker.committable is not None:
            with self._lock:
                self._stores[part.tp] = part.tracker.committable

    def _defer(self, part: _Partition, offset: int, until: float) -> None:
        """Pause the partition at ``offset`` until ``until``; the timer starts once the seek is done."""
        part.deferred = True

        def hold(consumer: Consumer) -> None:
            consumer.pause([part.where])
            consumer.seek(TopicPartition(part.tp[0], part.tp[1], offset))
            self._deferred.add(part.tp)
            self._call_loop(start_timer)

        def start_timer() -> None:
            assert self._loop is not None
            self._loop.call_later(max(0.0, until - self._clock()), wake)

        def wake() -> None:
            if not part.current:
                return
            part.deferred = False
            with self._lock:
                self._commands.append((part, release))

        def release(consumer: Consumer) -> None:
            self._deferred.discard(part.tp)
            if not self._throttled:
                consumer.resume([part.where])

        with self._lock:
            self._commands.append((part, hold))

    def _release(self) -> None:
        with self._room:
            self._in_flight -= 1
            self._room.notify()

    def _fail(self, exc: BaseException) -> None:
        if self._fatal is None:
            log.error("stopping: %s", exc, exc_info=exc)
            self._fatal = exc
        self._stop.set()


def coordinates(record: Message) -> tuple[str, int, int]:
    """Topic, partition and offset of a consumed record (always set on records without an error)."""
    topic, partition, offset = record.topic(), record.partition(), record.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError("record without topic, partition or offset")
    return topic, partition, offset


def _names(tps: list[TP]) -> str:
    return ", ".join(f"{topic}[{partition}]" for topic, partition in sorted(tps)) or "nothing"
