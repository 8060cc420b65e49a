"""The runtime's per-partition state, as pure state machines (``consumers.runtime`` runs them).

- ``PartitionState`` (the event loop's side): which fetched records are taken in, which are put back by a
  ``Defer``, and which offset may be stored once records finish. One object per assignment: a revoked or
  lost partition's object stays revoked, so work finishing late never stores an offset for it.
- ``Pauses`` (the consumer thread's side): which partitions are paused and why — a deferred head until it
  is due, every partition while the runtime is full — and so what to pause or resume on each change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from consumers.offsets import OffsetTracker

TP = tuple[str, int]


@dataclass(eq=False)
class PartitionState:
    """One assignment of one partition."""

    tp: TP
    tracker: OffsetTracker = field(default_factory=OffsetTracker)
    working: int = 0  # records taken in whose work has not finished
    last_taken: int = -1  # the newest offset taken in; anything at or below it is a stale re-read
    deferred: bool = False  # its head waits to be due; records fetched meanwhile are not taken
    current: bool = True  # False once revoked or lost

    def take(self, offset: int) -> bool:
        """Whether a fetched record at ``offset`` is taken in: not after revocation, not while deferred
        (it will be read again), not a stale re-read of an offset taken before a seek."""
        if not self.current or self.deferred or offset <= self.last_taken:
            return False
        self.tracker.add(offset)  # before the work starts: it may finish before ``schedule`` returns
        self.last_taken = offset
        self.working += 1
        return True

    def put_back(self, offset: int) -> None:
        """The record at ``offset`` (the newest taken) must wait: it is read again after a seek to it."""
        self.tracker.withdraw(offset)
        self.last_taken = offset - 1
        self.working -= 1
        self.deferred = True

    def abandon(self) -> None:
        """A record's work could not start: it stays pending, so no later offset is ever stored."""
        self.working -= 1

    def finish(self, offset: int) -> int | None:
        """The record at ``offset`` is done: the offset to store now, if it moved and is still ours."""
        self.working -= 1
        moved = self.tracker.done(offset)
        return moved if moved is not None and self.current else None

    def fail(self) -> None:
        """A record's work failed: it is not done (its offset, and every later one, stay unstored)."""
        self.working -= 1

    def wake(self) -> bool:
        """The deferred head is due: whether to resume the partition (not when it is no longer ours)."""
        if not self.current:
            return False
        self.deferred = False
        return True

    def revoke(self) -> None:
        """No longer ours: work finishing from now on moves ``tracker.committable`` (what a revocation
        commits once it has waited for the work) but stores nothing by itself."""
        self.current = False

    @property
    def idle(self) -> bool:
        """No work in progress."""
        return self.working == 0


@dataclass
class Pauses:
    """Which assigned partitions are paused: a deferred one until woken, all of them while throttled.

    Each method returns the partitions to pause or resume, for the caller to pass to the consumer.
    """

    deferred: set[TP] = field(default_factory=set)
    throttled: bool = False

    def defer(self, tp: TP) -> list[TP]:
        """Pause ``tp`` until ``wake``."""
        self.deferred.add(tp)
        return [tp]

    def wake(self, tp: TP) -> list[TP]:
        """``tp``'s head is due: resume it, unless all are paused for room (it resumes with the rest)."""
        self.deferred.discard(tp)
        return [] if self.throttled else [tp]

    def throttle(self, assignment: Iterable[TP]) -> list[TP]:
        """Full: pause everything."""
        self.throttled = True
        return list(assignment)

    def unthrottle(self, assignment: Iterable[TP]) -> list[TP]:
        """Room again: resume everything but the deferred."""
        self.throttled = False
        return [tp for tp in assignment if tp not in self.deferred]

    def assigned(self, tps: Iterable[TP]) -> tuple[list[TP], list[TP]]:
        """New partitions, to (pause, resume): paused while throttled (a partition may come back paused)."""
        fresh = list(tps)
        return (fresh, []) if self.throttled else ([], fresh)

    def forget(self, tps: Iterable[TP]) -> None:
        """Revoked or lost partitions."""
        self.deferred.difference_update(tps)
