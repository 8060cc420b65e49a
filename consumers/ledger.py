"""The delivery log as the sender's ledger: a record read again sends only what the log holds no attempt of.

A crash, a restart or a rebalance makes the next owner of a partition read again every record after the last
committed offset. Most of their deliveries were made and logged already: sending them again would be a second
ERP booking for receivers that do not drop duplicates. So, per partition:

- on assignment, the log's position for it (``log_positions``: the highest source offset it holds an
  attempt of) is loaded; records above it cannot have been sent and go straight through, so a fresh
  partition never waits for a query;
- a record at or below it waits, and the ids of its deliveries are looked up in the log, in batches of up to
  ``BATCH`` records, on the ``delivery_id`` index. A delivery the log holds an attempt of is done: it
  succeeded, or it failed and was handed on to its retry tier or the dead-letter topic before its failure
  was logged (``consumers.pipeline``). The others are sent;
- records behind a waiting one wait too, so one asset's deliveries to one webhook keep their order.

What is left is the honest at-least-once: a delivery whose attempt was in flight, or logged but not yet
committed to the log, is sent again (with the same delivery id).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Engine

from assethooks import metrics
from assethooks.errors import StoreUnavailableError
from assethooks.store.delivery_log import logged_deliveries, logged_positions
from consumers.pipeline import Delivery

log = logging.getLogger(__name__)
T = TypeVar("T")

BATCH = 500  # records looked up at once
RETRY_PAUSE = 1.0  # seconds before asking the log again when it is unavailable


class DeliveryLedger:
    """What the delivery log says, asked off the event loop."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def positions(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        """The highest source offset logged for each of ``partitions`` (absent: none); asked again while
        the store is unavailable."""
        return await _patiently(lambda: asyncio.to_thread(logged_positions, self._engine, topic, partitions))

    async def logged(self, delivery_ids: Iterable[str]) -> dict[str, tuple[int, bool]]:
        """For each delivery the log holds attempts of: the highest attempt number, and whether one
        succeeded; asked again while the store is unavailable."""
        ids = list(delivery_ids)
        return await _patiently(lambda: asyncio.to_thread(logged_deliveries, self._engine, ids))


@dataclass(eq=False)
class _Held:
    offset: int
    deliveries: list[Delivery]


@dataclass(eq=False)
class _Gate:
    """One assignment of one partition."""

    topic: str
    partition: int
    high: int | None = None  # the log's position; None while it loads
    held: deque[_Held] = field(default_factory=deque)
    busy: bool = False  # loading the position or looking records up
    checked: int = 0  # deliveries of records read again, looked up so far
    skipped: int = 0


class RereadGate:
    """Sends each record's deliveries, or holds a record read again until the log says which are done."""

    def __init__(self, ledger: DeliveryLedger, send: Callable[[Delivery], None]) -> None:
        self._ledger = ledger
        self._send = send
        self._gates: dict[tuple[str, int], _Gate] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def assigned(self, partitions: Sequence[tuple[str, int]]) -> None:
        """New assignments: each starts by loading the log's position for it."""
        by_topic: dict[str, list[_Gate]] = {}
        for topic, partition in partitions:
            gate = self._gates[(topic, partition)] = _Gate(topic, partition, busy=True)
            by_topic.setdefault(topic, []).append(gate)
        for topic, gates in by_topic.items():
            self._start(self._load(topic, gates))

    def take(self, topic: str, partition: int, offset: int, deliveries: list[Delivery]) -> None:
        """Send a record's deliveries now, or once its place in the log is known."""
        gate = self._gates.get((topic, partition))
        if gate is None or (gate.high is not None and offset > gate.high and not gate.held):
            for delivery in deliveries:  # the normal path: never sent before
                self._send(delivery)
            return
        gate.held.append(_Held(offset, deliveries))
        self._pump(gate)

    def _pump(self, gate: _Gate) -> None:
        if gate.busy or gate.high is None:
            return
        while gate.held and gate.held[0].offset > gate.high:
            for delivery in gate.held.popleft().deliveries:
                self._send(delivery)
        if gate.held:
            batch: list[_Held] = []
            while gate.held and gate.held[0].offset <= gate.high and len(batch) < BATCH:
                batch.append(gate.held.popleft())
            gate.busy = True
            self._start(self._look_up(gate, batch))
        elif gate.checked:
            log.info(
                "%s[%d] read again: skipped %d of %d deliveries, delivered already",
                gate.topic,
                gate.partition,
                gate.skipped,
                gate.checked,
            )
            gate.checked = gate.skipped = 0

    async def _load(self, topic: str, gates: list[_Gate]) -> None:
        partitions = [gate.partition for gate in gates]
        try:
            positions = await self._ledger.positions(topic, partitions)
        except Exception as exc:  # a bug: what waits must not complete
            for gate in gates:
                self._fail(gate, exc)
            raise
        for gate in gates:
            gate.high = positions.get(gate.partition, -1)
            gate.busy = False
            self._pump(gate)

    async def _look_up(self, gate: _Gate, batch: list[_Held]) -> None:
        ids = [delivery.delivery_id for held in batch for delivery in held.deliveries]
        try:
            logged = await self._ledger.logged(ids)
        except Exception as exc:  # a bug: what waits must not complete
            gate.held.extendleft(reversed(batch))
            self._fail(gate, exc)
            raise
        for held in batch:
            for delivery in held.deliveries:
                gate.checked += 1
                if delivery.delivery_id in logged:
                    gate.skipped += 1
                    metrics.REDELIVERIES_SKIPPED.inc()
                    delivery.done(None)  # its attempt is in the log: done, its record's offset moves on
                else:
                    self._send(delivery)
        gate.busy = False
        self._pump(gate)

    @staticmethod
    def _fail(gate: _Gate, error: BaseException) -> None:
        while gate.held:
            for delivery in gate.held.popleft().deliveries:
                delivery.done(error)

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _patiently(ask: Callable[[], Awaitable[T]]) -> T:
    """``ask()``, again after a growing pause while the store is unavailable."""
    pause = RETRY_PAUSE
    while True:
        try:
            return await ask()
        except StoreUnavailableError as exc:
            log.warning("delivery log not read, retrying in %.0fs: %s", pause, exc)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 30.0)
