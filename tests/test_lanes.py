"""The per-webhook lanes (pure asyncio logic): order per asset, a busy process is not congestion, a stalled
endpoint is; a rate-limited webhook is paced without holding back another; adaptive concurrency."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from consumers.lanes import Lanes, Outcome, Spill
from consumers.pacing import Concurrency, GroupShare, RateLimits


@dataclass
class Job:
    lane: int
    affinity: str
    number: int
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    queued_at: float = 0.0
    turn: float = 0.0
    rate: float | None = None


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.001)


def submitted(lanes: Lanes[Job], job: Job) -> asyncio.Future[None]:
    lanes.submit(job)
    return job.done


class Endpoints:
    """Fake attempts: each lane answers after its latency, or never (until released).

    Like one process sharing its CPU, an attempt takes longer the more attempts run at once.
    """

    def __init__(self, latency: dict[int, float | None], *, capacity: int | None = None) -> None:
        self.latency = latency
        self.capacity = capacity  # more attempts at once than this are answered "too many" (429)
        self.running = 0
        self.most = 0  # the most attempts running at once
        self.by_lane: Counter[int] = Counter()  # attempts running now, per lane
        self.most_by_lane: Counter[int] = Counter()
        self.attempted: list[Job] = []
        self.started: list[tuple[float, Job]] = []
        self.overloaded: list[Job] = []
        self.spilled: list[tuple[Job, Spill]] = []
        self.waits: list[float] = []
        self.release = asyncio.Event()
        self.begun = 0.0

    async def attempt(self, job: Job) -> Outcome:
        delay = self.latency[job.lane]
        self.running += 1
        self.most = max(self.most, self.running)
        self.by_lane[job.lane] += 1
        self.most_by_lane[job.lane] = max(self.most_by_lane[job.lane], self.by_lane[job.lane])
        self.started.append((time.monotonic(), job))
        too_many = self.capacity is not None and self.running > self.capacity
        try:
            if too_many:  # refused at once, as receivers do
                await asyncio.sleep(0)
            elif delay is None:
                await self.release.wait()
            else:
                await asyncio.sleep(delay * (1 if self.capacity else self.running))
        finally:
            self.running -= 1
            self.by_lane[job.lane] -= 1
        if too_many:
            self.overloaded.append(job)
            job.done.set_result(None)
            return Outcome.OVERLOADED
        self.attempted.append(job)
        job.done.set_result(None)
        return Outcome.OK

    def spill(self, job: Job, why: Spill, wait: float) -> None:
        self.spilled.append((job, why))
        self.waits.append(wait)
        job.done.set_result(None)

    @staticmethod
    def failed(job: Job, error: BaseException) -> None:
        job.done.set_exception(error)


def lanes_for(
    endpoints: Endpoints,
    *,
    workers: int,
    max_running: int,
    spill_after: float,
    initial: int | None = None,
    max_wait: float = 1.0,
) -> Lanes[Job]:
    share = GroupShare({"group": 2})
    share.owned("group", [("events", 0), ("events", 1)])
    return Lanes(
        workers=workers,
        max_running=max_running,
        spill_after=spill_after,
        limits=RateLimits(share, max_wait=max_wait, max_waiting=1000),
        concurrency=lambda: Concurrency(initial=initial or workers, maximum=workers, window=16),
        attempt=endpoints.attempt,
        spill=endpoints.spill,
        failed=endpoints.failed,
    )


def test_one_assets_deliveries_to_one_webhook_are_attempted_in_order() -> None:
    async def scenario() -> list[int]:
        endpoints = Endpoints({1: 0.001})
        lanes = lanes_for(endpoints, workers=4, max_running=8, spill_after=5)
        jobs = [Job(1, f"asset-{number % 3}", number) for number in range(60)]
        await asyncio.wait_for(asyncio.gather(*(submitted(lanes, job) for job in jobs)), 10)
        return [job.number for job in endpoints.attempted if job.affinity == "asset-1"]

    order = asyncio.run(scenario())
    assert order == sorted(order)
    assert len(order) == 20


def test_a_busy_process_is_not_congestion_nothing_spills() -> None:
    """Far more work than the process runs at once (fan-out): deliveries wait their turn, none spills."""

    async def scenario() -> Endpoints:
        endpoints = Endpoints(dict.fromkeys(range(20), 0.002))
        # 160 attempts at once would each take 0.3 s and look like 20 slow endpoints; 4 take 8 ms
        lanes = lanes_for(endpoints, workers=8, max_running=4, spill_after=0.2)
        lanes.start()
        jobs = [Job(lane, f"asset-{number}", number) for number in range(40) for lane in range(20)]
        await asyncio.wait_for(asyncio.gather(*(submitted(lanes, job) for job in jobs)), 30)
        await lanes.close()
        return endpoints

    endpoints = asyncio.run(scenario())
    assert endpoints.spilled == []
    assert len(endpoints.attempted) == 800


def test_a_stalled_endpoint_spills_its_waiting_deliveries_and_the_others_go_on() -> None:
    async def scenario() -> Endpoints:
        endpoints = Endpoints({1: None, 2: 0.001})
        lanes = lanes_for(endpoints, workers=2, max_running=16, spill_after=0.25)
        lanes.start()
        stalled = [submitted(lanes, Job(1, f"asset-{number}", number)) for number in range(10)]
        healthy = [submitted(lanes, Job(2, f"asset-{number}", number)) for number in range(50)]
        await asyncio.wait_for(asyncio.gather(*healthy), 10)
        # the running attempts (one per used queue, at most two) hang; the waiting ones are spilled
        while len(endpoints.spilled) < 8:
            await asyncio.sleep(0.01)
        assert lanes.congested(1)
        late = submitted(lanes, Job(1, "asset-late", 99))  # spilled at once while congested
        await asyncio.wait_for(late, 10)
        endpoints.release.set()
        await asyncio.wait_for(asyncio.gather(*stalled), 10)
        await lanes.close()
        return endpoints

    endpoints = asyncio.run(scenario())
    attempted = [job.number for job in endpoints.attempted if job.lane == 1]
    spilled = [job.number for job, _why in endpoints.spilled]
    assert 1 <= len(attempted) <= 2
    assert 99 in spilled
    assert sorted(attempted + spilled) == [*range(10), 99]  # each exactly once
    assert len([job for job in endpoints.attempted if job.lane == 2]) == 50


def test_a_rate_limited_webhook_is_paced_spills_what_would_wait_too_long_and_holds_no_other_back() -> None:
    async def scenario() -> Endpoints:
        endpoints = Endpoints({1: 0.001, 2: 0.001})
        lanes = lanes_for(endpoints, workers=8, max_running=16, spill_after=5, max_wait=0.5)
        endpoints.begun = time.monotonic()
        limited = [submitted(lanes, Job(1, f"asset-{number}", number, rate=20)) for number in range(40)]
        free = [submitted(lanes, Job(2, f"asset-{number}", number)) for number in range(200)]
        await asyncio.wait_for(asyncio.gather(*free), 10)
        free_done = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*limited), 10)
        assert free_done < max(at for at, job in endpoints.started if job.lane == 1)  # not held back
        return endpoints

    endpoints = asyncio.run(scenario())
    starts = [at for at, job in endpoints.started if job.lane == 1]
    # 20/s with half a second of waiting at most: 11 turns (now, then every 50 ms), the rest spilled
    assert len(starts) == 11
    # never ahead of the schedule (a start the loop made late may be followed closely by the next one)
    assert all(at >= endpoints.begun + number * 0.05 for number, at in enumerate(starts))
    assert [why for _job, why in endpoints.spilled] == [Spill.OVER_RATE] * 29
    # sent away to come back one interval apart, after the turns given here
    assert endpoints.waits == pytest.approx([0.5 + number * 0.05 for number in range(29)], abs=0.01)
    assert len([job for job in endpoints.attempted if job.lane == 2]) == 200


def test_adaptive_concurrency_settles_under_what_the_endpoint_takes() -> None:
    async def scenario() -> tuple[Endpoints, Lanes[Job]]:
        endpoints = Endpoints({1: 0.002}, capacity=5)
        lanes = lanes_for(endpoints, workers=64, max_running=256, spill_after=5, initial=2)
        jobs = [Job(1, f"asset-{number}", number) for number in range(3000)]
        await asyncio.wait_for(asyncio.gather(*(submitted(lanes, job) for job in jobs)), 60)
        return endpoints, lanes

    endpoints, _lanes = asyncio.run(scenario())
    assert endpoints.most >= 6  # it probed above the capacity...
    late = endpoints.started[1000:]
    overloaded = {id(job) for job in endpoints.overloaded}
    share = sum(id(job) in overloaded for _at, job in late) / len(late)
    assert share < 0.05  # ...and settled where few attempts are refused
    assert len(endpoints.attempted) + len(endpoints.overloaded) == 3000


def test_group_share_is_the_part_of_each_delivering_groups_partitions_owned() -> None:
    share = GroupShare({"dispatchers": 6, "retriers": 42})
    share.owned("dispatchers", [("events", 0), ("events", 1), ("events", 2)])
    share.owned("projectors", [("events", 0)])  # not a group that delivers
    assert share.fraction == 0.25  # half of the dispatchers' partitions, none of the retriers'
    share.owned("retriers", [("retry.5s", partition) for partition in range(42)])
    assert share.fraction == 0.75
    share.owned("dispatchers", [])  # revoked
    assert share.fraction == 0.5


def test_a_rate_limit_is_the_groups_a_member_takes_its_share() -> None:
    share = GroupShare({"group": 4})
    limits = RateLimits(share, max_wait=1.0, max_waiting=1000)
    assert limits.reserve(1, 10, now=0.0) is None  # nothing owned: no turn
    share.owned("group", [("events", 0), ("events", 1)])  # half: 5/s here
    assert [limits.reserve(1, 10, now=0.0) for _ in range(6)] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert limits.reserve(1, 10, now=0.0) is None  # 1.2 s away
    assert limits.overflow(1, 10, now=0.0) == 1.0  # the first one sent away comes back after the wait
    assert limits.overflow(1, 10, now=0.0) == pytest.approx(1.2)  # the next, one interval later
    assert limits.reserve(2, 10, now=0.0) == 0.0  # another webhook has its own turns
    assert limits.reserve(1, 10, now=5.0) == 0.0  # idle time is not saved up: no burst


def test_aimd_starts_fast_then_adds_one_per_window_of_successes_and_halves_once_per_epoch() -> None:
    concurrency = Concurrency(initial=4, maximum=64, window=3)
    assert [concurrency.succeeded() for _ in range(6)] == [True] * 6  # the slow start: one per success
    assert concurrency.limit == 10
    epoch = concurrency.epoch
    assert concurrency.overloaded(epoch)
    assert concurrency.limit == 5
    assert not concurrency.overloaded(epoch)  # started before the halving: no second one
    assert concurrency.limit == 5
    raised = [concurrency.succeeded() for _ in range(5)]
    assert raised == [False, False, False, False, True]  # a window: max(3, limit 5) successes
    assert concurrency.limit == 6
    assert concurrency.overloaded(concurrency.epoch)
    assert concurrency.limit == 3
    for _ in range(10_000):
        concurrency.succeeded()
    assert concurrency.limit == 64  # never above the maximum
    for _ in range(8):
        concurrency.overloaded(concurrency.epoch)
    assert concurrency.limit == 1  # never below one


def test_a_webhooks_concurrency_limit_holds_while_its_deliveries_wait_for_the_processs_turns() -> None:
    async def scenario() -> Endpoints:
        endpoints = Endpoints({1: None, 2: 0.005})
        share = GroupShare({"group": 1})
        limits = iter([4, 1])  # lane 1 may run 4 at once, lane 2 one (and no more after successes)
        lanes: Lanes[Job] = Lanes(
            workers=8,
            max_running=4,
            spill_after=30,
            limits=RateLimits(share, max_wait=1.0, max_waiting=1000),
            concurrency=lambda: Concurrency(initial=(limit := next(limits)), maximum=limit, window=16),
            attempt=endpoints.attempt,
            spill=endpoints.spill,
            failed=endpoints.failed,
        )
        # four assets in four different queues of lane 1: it holds every one of the process's places
        assets = list({hash(f"asset-{number}") % 8: f"asset-{number}" for number in range(100)}.values())[:4]
        hanging = [submitted(lanes, Job(1, asset, number)) for number, asset in enumerate(assets)]
        waiting = [submitted(lanes, Job(2, f"asset-{number}", number)) for number in range(8)]
        await asyncio.wait_for(until(lambda: endpoints.running == 4), 5)
        assert endpoints.most_by_lane[2] == 0  # lane 2's workers wait (for a place, or for room)
        endpoints.release.set()
        await asyncio.wait_for(asyncio.gather(*hanging, *waiting), 10)
        return endpoints

    endpoints = asyncio.run(scenario())
    assert endpoints.most_by_lane[2] == 1
    assert len(endpoints.attempted) == 12


def test_deliveries_an_endpoint_has_no_room_for_spill_instead_of_waiting_behind_it() -> None:
    async def scenario() -> Endpoints:
        endpoints = Endpoints({1: 0.01}, capacity=1)  # anything above one at once is refused at once
        lanes = lanes_for(endpoints, workers=16, max_running=64, spill_after=0.1, initial=16)
        lanes.start()
        jobs = [submitted(lanes, Job(1, f"asset-{number}", number)) for number in range(300)]
        await asyncio.wait_for(asyncio.gather(*jobs), 30)
        await lanes.close()
        return endpoints

    endpoints = asyncio.run(scenario())
    congested = [job for job, why in endpoints.spilled if why is Spill.CONGESTED]
    assert congested  # not all 300 waited their turn one at a time
    assert len(endpoints.attempted) + len(endpoints.overloaded) + len(congested) == 300


def test_a_rate_limits_turns_follow_the_share_of_the_moment_and_few_wait_at_once() -> None:
    share = GroupShare({"group": 12})
    limits = RateLimits(share, max_wait=3600.0, max_waiting=1000)
    share.owned("group", [("events", 0)])  # a twelfth, for a moment: 1/m becomes one turn in 12 minutes
    assert limits.reserve(1, 1 / 60, now=0.0) == 0.0
    share.owned("group", [("events", partition) for partition in range(12)])  # the whole share again
    assert limits.reserve(1, 1 / 60, now=0.0) == pytest.approx(60.0)  # spaced by the share now, not 12 min

    few = RateLimits(share, max_wait=1.0, max_waiting=3)
    turns = [few.reserve(2, 100, now=0.0) for _ in range(5)]
    assert turns == pytest.approx([0.0, 0.01, 0.02, 0.03, None])  # at most 3 waiting, however near


def test_a_limit_the_deliveries_do_not_fill_is_not_raised() -> None:
    made: list[Concurrency] = []

    def concurrency() -> Concurrency:
        made.append(Concurrency(initial=4, maximum=64, window=16))
        return made[-1]

    async def scenario() -> None:
        endpoints = Endpoints({1: 0.001})
        lanes: Lanes[Job] = Lanes(
            workers=8,
            max_running=64,
            spill_after=30,
            limits=RateLimits(GroupShare({"group": 1}), max_wait=1.0, max_waiting=1000),
            concurrency=concurrency,
            attempt=endpoints.attempt,
            spill=endpoints.spill,
            failed=endpoints.failed,
        )
        for batch in range(100):  # two at a time: the limit of 4 is never reached
            jobs = [Job(1, f"asset-{batch}-{number}", number) for number in range(2)]
            await asyncio.wait_for(asyncio.gather(*(submitted(lanes, job) for job in jobs)), 10)
        assert made[0].limit == 4
        flood = [Job(1, f"asset-{number}", number) for number in range(400)]  # now it fills it: it grows
        await asyncio.wait_for(asyncio.gather(*(submitted(lanes, job) for job in flood)), 10)
        assert made[0].limit > 4

    asyncio.run(scenario())
