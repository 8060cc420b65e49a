"""Completion without a future per item: the hot paths report "done" through plain callbacks.

``Done`` is called once, with ``None`` when the work's effects are durable or with the error that stopped
them. ``follow`` turns a coroutine's end into such a call; ``Countdown`` waits for several; ``settle`` turns
such a call back into a future's result, for the paths that await.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Done = Callable[[BaseException | None], None]

_KEPT: set[asyncio.Future[None]] = set()  # the loop keeps only weak references to tasks


def follow(work: Awaitable[None], done: Done) -> None:
    """Call ``done`` when ``work`` (a coroutine or a future) finishes."""
    future = asyncio.ensure_future(work)
    _KEPT.add(future)

    def report(finished: asyncio.Future[None]) -> None:
        _KEPT.discard(finished)
        done(RuntimeError("work cancelled") if finished.cancelled() else finished.exception())

    future.add_done_callback(report)


def settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    """Complete ``future`` as a ``Done`` call reports: with ``error``, or with ``None`` when there is none.
    A future already done (its waiter cancelled it) is left alone."""
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class Countdown:
    """Calls ``done`` once ``count`` parts reported (with the first error, if any): one record waiting for
    its deliveries, or one delivery for its log entry and its hand-off."""

    __slots__ = ("_done", "_error", "_left")

    def __init__(self, count: int, done: Done) -> None:
        self._left = count
        self._done = done
        self._error: BaseException | None = None

    def __call__(self, error: BaseException | None) -> None:
        """One part is done (``error`` when it failed)."""
        if error is not None and self._error is None:
            self._error = error
        self._left -= 1
        if self._left == 0:
            self._done(self._error)
