"""Retry routing: after a failed attempt, which tier waits for the next one (or that none is left); and,
in a tier, whether a task is attempted, waited for or moved on.

Pure functions over values: the random draw for jitter and the clock are parameters.

**The tier invariant.** A retry tier is one queue per partition, read head first: the retrier waits for its
head to be due (``consumers.runtime.Defer``), and everything behind the head waits with it. So a tier
holds only waits within its band, ``tier ± spread(tier)`` with ``spread = min(RETRY_JITTER * tier,
MAX_SPREAD)``, and no task waits behind one due later than itself by more than ``2 * spread(tier)``
(0.4 s in a 1 s tier, 2 s in the 5 s tier, at most 60 s in any tier). A wait longer than its tier's band (a
``Retry-After`` beyond the longest tier, or between two tiers) is made of hops: the task waits only as long
as the tasks put in the tier after it could (``tier - spread`` after it was put there), then moves to the
back of the tier that suits what remains of its wait, timed so that the remainder fits a tier's band. It is
never attempted before its ``not_before``. One exception to the bound, and only for the task itself: when it
reached the head of its tier too late for that (the remainder is shorter than the shortest tier's band), it
waits once more in the shortest tier, at most ``shortest + spread`` behind its own ``not_before``.

Why hops rather than refusing long ``Retry-After`` values or ordering a tier in memory: a receiver's
``Retry-After`` is the receiver's to choose (an hour is common), and a tier ordered in memory would hold
tasks uncommitted for as long as they wait (hours), so a crash or a rebalance would read them all again.
A hop costs one small record per tier period, for tasks that wait longer than every tier.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MAX_SPREAD = 30.0  # seconds: the jitter of a long tier is at most ± this
EPSILON = 0.001  # seconds: closer than this is now


@dataclass(frozen=True)
class Tiers:
    """The retry tiers (one per distinct delay of the schedule) and the jitter of their waits."""

    delays: tuple[float, ...]  # distinct, shortest first
    jitter: float  # a fraction: 0.2 = ±20 %

    @classmethod
    def of(cls, schedule: Sequence[float], jitter: float) -> Tiers:
        """The tiers of a retry schedule."""
        return cls(tuple(sorted(set(schedule))), jitter)

    def spread(self, tier: float) -> float:
        """How far a wait in ``tier`` may lie from ``tier`` (both ways)."""
        return min(self.jitter * tier, MAX_SPREAD)

    def for_wait(self, wait: float) -> float:
        """The tier for a task that waits ``wait`` seconds: the longest whose waits never end after it
        (so the task is never held back by those in front of it), else the shortest."""
        fitting = [tier for tier in self.delays if tier - self.spread(tier) <= wait]
        return fitting[-1] if fitting else self.delays[0]

    def longest_held(self, shortest: float, longest: float) -> float | None:
        """The longest wait between ``shortest`` and ``longest`` that a tier holds, if any."""
        for tier in reversed(self.delays):
            low, high = tier - self.spread(tier), tier + self.spread(tier)
            if low <= longest and high >= shortest:
                return min(longest, high)
        return None

    def holds(self, tier: float, wait: float) -> bool:
        """Whether a wait of ``wait`` seconds, put in ``tier``, ends within the tier's band."""
        return wait <= tier + self.spread(tier) + EPSILON


@dataclass(frozen=True)
class Retry:
    """The next attempt waits ``delay`` seconds, in ``tier``."""

    tier: float
    delay: float


def next_retry(
    failed_attempt: int,
    schedule: Sequence[float],
    tiers: Tiers,
    draw: float,
    *,
    retry_after: float | None = None,
    retry_after_max: float = 3600.0,
) -> Retry | None:
    """The retry after attempt ``failed_attempt`` (1-based, counted within the current budget) failed, or
    ``None`` when none is left.

    ``schedule[i]`` is the delay before attempt ``i + 2``, jittered within its tier's spread by ``draw``
    (a uniform random number in [0, 1)). A ``retry_after`` the endpoint asked for makes the wait at least
    that long, up to ``retry_after_max``.
    """
    if failed_attempt < 1 or failed_attempt > len(schedule):
        return None
    step = schedule[failed_attempt - 1]
    delay = step + tiers.spread(step) * (2 * draw - 1)
    if retry_after is None or retry_after <= delay:
        return Retry(step, delay)
    delay = max(delay, min(retry_after, retry_after_max))
    return Retry(tiers.for_wait(delay), delay)


@dataclass(frozen=True)
class Attempt:
    """The task is due: attempt it."""


@dataclass(frozen=True)
class Wait:
    """Nothing to do before ``until`` (a Unix time)."""

    until: float


@dataclass(frozen=True)
class Hop:
    """Move the task to the back of ``tier``: it waits longer than the tier it is in."""

    tier: float


def in_tier(tiers: Tiers, tier: float, *, put_at: float, due: float, now: float) -> Attempt | Wait | Hop:
    """What to do with the head of ``tier``: a task due at ``due`` that was put there at ``put_at`` (all
    Unix times)."""
    if due <= now:
        return Attempt()
    if tiers.holds(tier, due - put_at):
        return Wait(due)
    # Longer than the tier. Those put after it may be due from ``latest`` on: hop by then, at the latest
    # moment that leaves a wait some tier holds (its last hop), else at ``latest`` (one more hop).
    latest = max(put_at + tier - tiers.spread(tier), now)
    last = tiers.longest_held(due - latest, due - now)
    if last is not None:
        at = due - last
        return Wait(at) if at > now + EPSILON else Hop(tiers.for_wait(last))
    return Wait(latest) if latest > now else Hop(tiers.for_wait(due - now))


def postponement(attempt: int, schedule: Sequence[float], tiers: Tiers, *, at_least: float = 0.0) -> Retry:
    """The wait of a delivery its webhook cannot take now (congested, or its circuit open), which keeps its
    attempt: as long as the wait before ``attempt`` (counted within the budget; the first retry's for a
    first attempt), and at least ``at_least``."""
    delay = max(schedule[min(max(attempt - 2, 0), len(schedule) - 1)], at_least)
    return Retry(tiers.for_wait(delay), delay)
