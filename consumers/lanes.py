"""Per-webhook lanes: bounded concurrency, per-asset order, and spilling when an endpoint is congested.

Each webhook gets ``workers`` queues, each served by at most one worker coroutine at a time; a delivery
goes to the queue its asset id hashes to, so one asset's deliveries to one webhook are attempted in the
order they were submitted, while different assets run concurrently.

At most ``max_running`` attempts run at once, all lanes together; an attempt's clock starts when it gets
its turn. A lane is congested when a delivery has waited ``spill_after`` seconds in it while an attempt has
been running at least that long, or while the lane had no room under its concurrency limit: the endpoint is
slow, dead or refusing (a queue that is merely long because the process is busy does not count). Its queued
deliveries, and new ones while it stays congested, are handed to ``spill`` instead (the pipeline moves them
to a retry tier without using an attempt), so records keep completing and one bad endpoint cannot hold the
in-flight window that every other webhook shares. The lane takes deliveries again after an attempt that was
quick, or once it is idle.

Each webhook's attempts are paced (``consumers.pacing``): at most its adaptive concurrency limit run at
once, adapted to what ``attempt`` returns (``Outcome``); a rate-limited delivery's turn is reserved when it
is submitted, and one whose turn would come too late (``consumers.pacing.RateLimits``) is spilled at once.
Waiting for a turn or for room under the concurrency limit happens before taking one of the
``max_running`` places and is bounded (a turn is near; a lane without room for ``spill_after`` is
congested), so it does not hold back another webhook.

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
from enum import Enum
from typing import Any, Generic, Protocol, TypeVar

from assethooks import metrics
from consumers.pacing import Concurrency, RateLimits

log = logging.getLogger(__name__)


class Routed(Protocol):
    """What a lane needs of a delivery."""

    queued_at: float  # set by the lanes
    turn: float  # set by the lanes: when a rate-limited delivery may start

    @property
    def lane(self) -> int:
        """The lane (webhook id)."""
        ...

    @property
    def affinity(self) -> str:
        """Deliveries with the same affinity (asset id) keep their order within a lane."""
        ...

    @property
    def rate(self) -> float | None:
        """The lane's rate limit for the whole consumer group, per second (``None``: none)."""
        ...


D = TypeVar("D", bound=Routed)


class Outcome(Enum):
    """What an attempt tells of its endpoint's capacity."""

    OK = "ok"  # answered 2xx
    OVERLOADED = "overloaded"  # 429, 503 or a timeout: fewer concurrent attempts
    FAILED = "failed"  # failed otherwise: says nothing of capacity


class Spill(Enum):
    """Why a delivery is spilled."""

    CONGESTED = "the webhook is congested"
    OVER_RATE = "over its rate limit"


@dataclass(eq=False)
class _Lane(Generic[D]):
    queues: list[deque[D]]
    running: list[bool]
    started: list[float | None]  # when each worker's current attempt began
    concurrency: Concurrency
    busy: int = 0  # deliveries taken from the queues and not finished
    attempting: int = 0  # attempts running
    queued: int = 0
    congested: bool = False
    room: deque[asyncio.Future[None]] = field(default_factory=deque)  # workers waiting for the limit
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class Lanes(Generic[D]):
    """Runs ``attempt`` for each submitted delivery, within its webhook's lane; ``spill`` hands a delivery
    on without attempting it, saying why and how long it should wait at least."""

    def __init__(
        self,
        *,
        workers: int,
        max_running: int,
        spill_after: float,
        limits: RateLimits,
        concurrency: Callable[[], Concurrency],
        attempt: Callable[[D], Coroutine[Any, Any, Outcome | None]],
        spill: Callable[[D, Spill, float], None],
        failed: Callable[[D, BaseException], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._workers = workers
        self._max_running = max_running
        self._running = 0  # attempts running now, all lanes together
        self._turns: deque[asyncio.Future[None]] = deque()  # workers waiting for one to end
        self._spill_after = spill_after
        self._limits = limits
        self._concurrency = concurrency
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
                [deque() for _ in range(self._workers)],
                [False] * self._workers,
                [None] * self._workers,
                self._concurrency(),
            )
            metrics.WEBHOOK_CONCURRENCY.labels(str(delivery.lane)).set(lane.concurrency.limit)
        if lane.congested:
            self._spill(delivery, Spill.CONGESTED, 0.0)
            return
        now = delivery.queued_at = self._clock()
        rate = delivery.rate
        if rate is not None:  # its turn is reserved now, in the order deliveries come
            wait = self._limits.reserve(delivery.lane, rate, now)
            if wait is None:
                self._spill(delivery, Spill.OVER_RATE, self._limits.overflow(delivery.lane, rate, now))
                return
            delivery.turn = now + wait
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
                try:
                    if delivery.rate is not None or lane.attempting >= lane.concurrency.limit:
                        await self._paced(lane, delivery)
                    lane.attempting += 1  # its place under the webhook's limit, from now until it is done
                    try:
                        if self._running >= self._max_running:
                            await self._turn()
                        self._running += 1
                        try:
                            if lane.congested:  # it became congested while this one waited
                                self._spill(delivery, Spill.CONGESTED, 0.0)
                                continue
                            began = lane.started[index] = self._clock()
                            epoch = lane.concurrency.epoch
                            # Only an attempt made at the limit says the limit could be higher (as TCP
                            # grows only a window it fills): the webhook's demand is what fills it.
                            full = lane.attempting >= lane.concurrency.limit
                            self._adapt(delivery.lane, lane, await self._attempt(delivery), epoch, full)
                        except Exception as exc:  # a bug: the record must not complete
                            self._failed(delivery, exc)
                            continue
                        finally:
                            self._running -= 1
                            self._next_turn()
                            lane.started[index] = None
                    finally:
                        lane.attempting -= 1
                        self._make_room(lane)
                    if lane.congested and self._clock() - began < self._spill_after:
                        lane.congested = False  # a quick attempt: the endpoint takes deliveries again
                finally:
                    lane.busy -= 1
                    if not lane.busy:
                        lane.congested = False  # idle: nothing holds its deliveries back any more
        finally:
            lane.running[index] = False

    async def _paced(self, lane: _Lane[D], delivery: D) -> None:
        """Wait for the delivery's turn under its rate limit, and for room under its webhook's concurrency
        limit (not once the lane is congested: the delivery is spilled instead)."""
        if delivery.rate is not None and (wait := delivery.turn - self._clock()) > 0:
            await asyncio.sleep(wait)
        while lane.attempting >= lane.concurrency.limit and not lane.congested:
            room = asyncio.get_running_loop().create_future()
            lane.room.append(room)
            await room

    def _adapt(self, lane_id: int, lane: _Lane[D], outcome: Outcome | None, epoch: int, full: bool) -> None:
        concurrency = lane.concurrency
        if outcome is Outcome.OK:
            if not full:
                return
            changed = concurrency.succeeded()
        elif outcome is Outcome.OVERLOADED:
            changed = concurrency.overloaded(epoch)
        else:
            return
        if changed:
            metrics.WEBHOOK_CONCURRENCY.labels(str(lane_id)).set(concurrency.limit)

    @staticmethod
    def _make_room(lane: _Lane[D]) -> None:
        """Wake the workers that fit under the lane's concurrency limit now (all of them once the lane is
        congested: they spill)."""
        free = len(lane.room) if lane.congested else lane.concurrency.limit - lane.attempting
        while free > 0 and lane.room:
            room = lane.room.popleft()
            if not room.done():  # not given up (its worker cancelled)
                room.set_result(None)
                free -= 1

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
                if now - oldest_wait < self._spill_after:
                    continue
                # Held back by the endpoint (an attempt that long, or no room under its limit), not by a
                # process merely busy with other lanes.
                if now - oldest_run < self._spill_after and not lane.room:
                    continue
                if not lane.congested:
                    log.warning(
                        "webhook %d is congested: spilling its waiting deliveries to a retry tier", lane_id
                    )
                lane.congested = True
                for queue in lane.queues:
                    while queue:
                        lane.queued -= 1
                        self._spill(queue.popleft(), Spill.CONGESTED, 0.0)
                self._make_room(lane)
