"""The operator and data-team tools, as library calls that the CLI (and any other front end) calls:
the test webhook, re-sending from the delivery log, the dead-letter drain, topic replay, and the status
of the consumer groups and backlogs.

Re-sends go through the normal pipeline: a task due now on the shortest retry tier, which the retrier
picks up, with the same delivery id as the original delivery. Every explicit re-send takes the next
attempt number after the highest one logged for its delivery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

COUNT_CAP = 100_000  # a listing cut by its limit counts the matching rows up to this many

Progress = Callable[[int], None]  # told the number of items just done; the CLI shows it (cli.output.progress)


def no_progress(_count: int) -> None:
    """The ``Progress`` of a caller that shows none."""


@dataclass(frozen=True)
class Listing(Generic[T]):
    """What a listing shows, and how many rows matched in all (``exact`` false: more than ``total``)."""

    items: list[T]
    total: int
    exact: bool = True
