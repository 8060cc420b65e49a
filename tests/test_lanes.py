"""The per-webhook lanes (pure asyncio logic): order per asset, a busy process is not congestion, a stalled
endpoint is."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from consumers.lanes import Lanes


@dataclass
class Job:
    lane: int
    affinity: str
    number: int
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    queued_at: float = 0.0


def submitted(lanes: Lanes[Job], job: Job) -> asyncio.Future[None]:
    lanes.submit(job)
    return job.done


class Endpoints:
    """Fake attempts: each lane answers after its latency, or never (until released).

    Like one process sharing its CPU, an attempt takes longer the more attempts run at once.
    """

    def __init__(self, latency: dict[int, float | None]) -> None:
        self.latency = latency
        self.running = 0
        self.attempted: list[Job] = []
        self.spilled: list[Job] = []
        self.release = asyncio.Event()

    async def attempt(self, job: Job) -> None:
        delay = self.latency[job.lane]
        self.running += 1
        try:
            if delay is None:
                await self.release.wait()
            else:
                await asyncio.sleep(delay * self.running)
        finally:
            self.running -= 1
        self.attempted.append(job)
        job.done.set_result(None)

    def spill(self, job: Job) -> None:
        self.spilled.append(job)
        job.done.set_result(None)

    @staticmethod
    def failed(job: Job, error: BaseException) -> None:
        job.done.set_exception(error)


def lanes_for(endpoints: Endpoints, *, workers: int, max_running: int, spill_after: float) -> Lanes[Job]:
    return Lanes(
        workers=workers,
        max_running=max_running,
        spill_after=spill_after,
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
        lanes = lanes_for(endpoints, workers=2, max_running=16, spill_after=0.05)
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
    spilled = [job.number for job in endpoints.spilled]
    assert 1 <= len(attempted) <= 2
    assert 99 in spilled
    assert sorted(attempted + spilled) == [*range(10), 99]  # each exactly once
    assert len([job for job in endpoints.attempted if job.lane == 2]) == 50
