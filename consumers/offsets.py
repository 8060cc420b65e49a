"""Which offset of a partition may be committed: the contiguous completed prefix (pure logic)."""

from __future__ import annotations

from collections import deque


class OffsetTracker:
    """The offsets of one partition taken in (in increasing order) and which of them are done.

    ``committable`` is the offset to commit so that a restart re-reads every record not yet done: the
    oldest pending offset, or one past the newest done offset when nothing is pending.
    """

    def __init__(self) -> None:
        self._pending: deque[int] = deque()
        self._done: set[int] = set()
        self._committable: int | None = None

    def add(self, offset: int) -> None:
        """Take in ``offset``, greater than every offset taken in before."""
        if self._pending and offset <= self._pending[-1]:
            raise ValueError(f"offset {offset} not after {self._pending[-1]}")
        self._pending.append(offset)

    def withdraw(self, offset: int) -> None:
        """Take back ``offset``, the newest taken in and not done (its record was deferred)."""
        if not self._pending or self._pending[-1] != offset:
            raise ValueError(f"offset {offset} is not the newest pending one")
        self._pending.pop()

    def done(self, offset: int) -> int | None:
        """Mark ``offset`` done; return the new committable offset when it moved, else ``None``."""
        self._done.add(offset)
        moved = False
        while self._pending and self._pending[0] in self._done:
            self._done.remove(self._pending[0])
            self._committable = self._pending.popleft() + 1
            moved = True
        return self._committable if moved else None

    @property
    def committable(self) -> int | None:
        """The offset to commit now, or ``None`` when nothing was completed yet."""
        return self._committable

    @property
    def pending(self) -> int:
        """How many offsets are taken in and not yet part of the committable prefix."""
        return len(self._pending)
