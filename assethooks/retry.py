"""The retry schedule: after which failed attempt the next one comes, when, and through which tier.

Pure functions: the random draw for jitter is a parameter, like the clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryStep:
    """The wait before the next attempt: the tier's delay and the jittered delay."""

    tier_delay: float
    delay: float


def next_retry(
    failed_attempt: int, schedule: Sequence[float], jitter: float, draw: float
) -> RetryStep | None:
    """The retry after attempt ``failed_attempt`` (1-based, counted within the current budget) failed, or
    ``None`` when none is left.

    ``schedule[i]`` is the delay before attempt ``i + 2``; ``jitter`` is a fraction (0.2 = ±20 %) and
    ``draw`` a uniform random number in [0, 1) that picks the point within it.
    """
    if failed_attempt < 1 or failed_attempt > len(schedule):
        return None
    tier_delay = schedule[failed_attempt - 1]
    factor = 1 + jitter * (2 * draw - 1)
    return RetryStep(tier_delay, tier_delay * factor)
