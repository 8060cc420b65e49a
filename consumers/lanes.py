"""Per-webhook lanes: bounded concurrency, per-asset order, and spilling when an endpoint is congested.

Each webhook gets ``workers`` queues, each served by at most one worker coroutine at a time; a delivery
goes to the queue its asset id hashes to, so one asset's deliveries to one webhook are attempted in the
order they were submitted, while different assets run concurrently.

At most ``max_running`` attempts run at once, all lanes together; an attempt's clock starts when it gets
its turn. A lane is congested when a delivery has waited ``spill_after`` seconds in it while an attempt has
been running at least that long: the endpoint is slow or dead (a queue that is merely long because the
process is busy does not count). Its queued deliveries, and new ones while it stays congested, are handed to
``spill`` instead (the pipeline moves them to a retry tier without using an attempt), so records keep
completing and one bad endpoint cannot hold the in-flight window that every other webhook shares. The lane
takes deliveries again after an attempt that was quick, or once it is idle.

There is no future per delivery: ``attempt`` and ``spill`` report each delivery's outcome themselves; an
exception from ``attempt`` (a bug) goes to ``failed``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

log = logging.getLogger(__name__)


class Routed(Protocol):
    """What a lane needs of a delivery."""

    queued_at: float  # set by the lanes

    @property
    def lane(self) -> int:
        """The lane (webhook id)."""
        ...

    @property
    def affinity(self) -> str:
        """Deliveries with the same affinity (asset id) keep their order within a lane."""
        ...


D = TypeVar("D", bound=Routed)


@dataclass(eq=False)
class _Lane(Generic[D]):
    queues: list[deque[D]]
    running: list[bool]
    started: list[float | None]  # when each worker's current attempt began
    busy: int = 0  # attempts in progress
    queued: int = 0
    congested: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class Lanes(Generic[D]):
    """Runs ``attempt`` for each submitted delivery, within its webhook's lane; ``spill`` hands a delivery
    on without attempting it."""

    def __init__(
        self,
        *,
        workers: int,
        max_running: int,
        spill_after: float,
        attempt: Callable[[D], Coroutine[Any, Any, None]],
        spill: Callable[[D], None],
        failed: Callable[[D, BaseException], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._workers = workers
        self._max_running = max_running
        self._running = 0  # attempts running now, all lanes together
        self._turns: deque[asyncio.Future[None]] = deque()  # workers waiting for one to end
        self._spill_after = spill_after
        self._attempt = attempt
        self._spill = spill
        self._failed = failed
        self._clock = clock
        self._lanes: dict[int, _Lane[D]] = {}
        self._monitor: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start watching for congestion."""
        self._monitor = asyncio.get_running_loop().create_task(self._watch(), name="lanes")

    async def close(self) -> None:
        """Stop watching; queued work keeps running to its end."""
        if self._monitor is not None:
            self._monitor.cancel()
            await asyncio.gather(self._monitor, return_exceptions=True)

    def submit(self, delivery: D) -> None:
        """Queue ``delivery`` in its lane (or spill it, when the lane is congested)."""
        lane = self._lanes.get(delivery.lane)
        if lane is None:
            lane = self._lanes[delivery.lane] = _Lane(
                [deque() for _ in range(self._workers)], [False] * self._workers, [None] * self._workers
            )
        if lane.congested:
            self._spill(delivery)
            return
        delivery.queued_at = self._clock()
        index = hash(delivery.affinity) % self._workers
        lane.queues[index].append(delivery)
        lane.queued += 1
        if not lane.running[index]:
            lane.running[index] = True
            task = asyncio.get_running_loop().create_task(self._work(lane, index))
            lane.tasks.add(task)
            task.add_done_callback(lane.tasks.discard)

    def congested(self, lane: int) -> bool:
        """True while the lane spills."""
        found = self._lanes.get(lane)
        return found is not None and found.congested

    async def _work(self, lane: _Lane[D], index: int) -> None:
        queue = lane.queues[index]
        try:
            while queue:
                delivery = queue.popleft()
                lane.queued -= 1
                lane.busy += 1
                if self._running >= self._max_running:
                    await self._turn()
                self._running += 1
                try:
                    if lane.congested:  # it became congested while this one waited its turn
                        self._spill(delivery)
                        continue
                    began = lane.started[index] = self._clock()
                    await self._attempt(delivery)
                except Exception as exc:  # a bug: the record must not complete
                    self._failed(delivery, exc)
                    continue
                finally:
                    self._running -= 1
                    self._next_turn()
                    lane.busy -= 1
                    lane.started[index] = None
                if lane.congested and (self._clock() - began < self._spill_after or not lane.busy):
                    lane.congested = False
        finally:
            lane.running[index] = False

    async def _turn(self) -> None:
        """Wait until an attempt ends (first come, first served): at most ``max_running`` run at once."""
        while self._running >= self._max_running:
            turn = asyncio.get_running_loop().create_future()
            self._turns.append(turn)
            await turn

    def _next_turn(self) -> None:
        while self._turns:
            turn = self._turns.popleft()
            if not turn.done():  # not given up (its worker cancelled)
                turn.set_result(None)
                return

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._spill_after / 4)
            now = self._clock()
            for lane_id, lane in self._lanes.items():
                if not lane.queued:
                    continue
                oldest_wait = min(queue[0].queued_at for queue in lane.queues if queue)
                oldest_run = min((began for began in lane.started if began is not None), default=now)
                if now - oldest_wait < self._spill_after or now - oldest_run < self._spill_after:
                    continue
                if not lane.congested:
                    log.warning(
                        "webhook %d is congested: spilling its waiting deliveries to a retry tier", lane_id
                    )
                lane.congested = True
                for queue in lane.queues:
                    while queue:
                        lane.queued -= 1
                        self._spill(queue.popleft())
