"""How fast and how wide a webhook is sent to: its rate limit, shared by the consumer group, and its
adaptive concurrency. Pure state machines (the clock is a parameter); ``consumers.lanes`` applies them.

Rate limits. A webhook's limit holds for the whole group: each process takes the share of it matching the
share of partitions it owns, half for the dispatcher group's (the source topic) and half for the retrier
group's (the retry tiers), recomputed on every assignment and revocation. Members own disjoint partitions,
so the shares add up to at most the whole limit however many processes run. Within a process, deliveries
are spaced evenly (a reservation per delivery, no burst): the next one starts ``1 / rate`` after the
previous one's turn. A delivery whose turn would come more than ``max_wait`` from now is not given one:
the lanes move it, unattempted, to a retry tier, so a limited webhook holds at most ``rate * max_wait``
deliveries waiting, and never more than ``max_waiting``. Those sent away wait there in a schedule of their
own (``overflow``), so that a backlog of hours waits in the long tiers instead of going round the shortest
one.

Adaptive concurrency (AIMD). Each webhook starts with ``initial`` concurrent attempts; until the endpoint
first says "too much" (429, 503, a timeout), every success adds one (a slow start, as in TCP: a slow but
healthy endpoint gets the concurrency its latency needs within seconds). From then on a window of
successes (as many as the limit, and at least ``window``) adds one, up to the maximum, and each "too
much" halves it, at most once for the attempts started at one limit. The lanes count only successes of
attempts started while the webhook was at its limit: a limit its deliveries do not fill is not raised.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

TP = tuple[str, int]


class GroupShare:
    """This process's share of every rate limit: for each consumer group that sends deliveries (the
    dispatcher and the retrier), the part of the group's partitions it owns; the groups weigh the same."""

    def __init__(self, partitions: Mapping[str, int]) -> None:
        self._partitions = {group: count for group, count in partitions.items() if count > 0}
        self._owned: dict[str, int] = {}  # by consumer group
        self.fraction = 0.0

    def owned(self, group: str, tps: Collection[TP]) -> None:
        """``group``'s member in this process now owns ``tps`` (every partition it owns)."""
        if group not in self._partitions:
            return
        self._owned[group] = len(tps)
        parts = [min(1.0, self._owned.get(name, 0) / count) for name, count in self._partitions.items()]
        self.fraction = sum(parts) / len(parts)


class RateLimits:
    """Turns for the deliveries of rate-limited webhooks, spaced by their share of the limit."""

    def __init__(self, share: GroupShare, *, max_wait: float, max_waiting: int) -> None:
        self._share = share
        self._max_wait = max_wait
        self._max_waiting = max_waiting
        self._last: dict[int, float] = {}  # per webhook: the latest turn given
        self._sent_away: dict[int, float] = {}  # per webhook: when the latest one sent away comes back

    def reserve(self, webhook_id: int, rate: float, now: float) -> float | None:
        """Seconds until the turn of a delivery of ``webhook_id`` (limited to ``rate`` per second for the
        group), reserved; ``None`` when it would be more than ``max_wait`` away, or more than
        ``max_waiting`` turns ahead (nothing reserved)."""
        share = rate * self._share.fraction
        if share <= 0:
            return None
        start = max(now, self._last.get(webhook_id, -math.inf) + 1 / share)  # spaced by today's share
        if start - now > min(self._max_wait, self._max_waiting / share):
            return None
        self._last[webhook_id] = start
        return start - now

    def overflow(self, webhook_id: int, rate: float, now: float) -> float:
        """How long a delivery of ``webhook_id`` that got no turn should wait in a retry tier: its place
        in a second schedule, of the deliveries this process sent away, one share's interval apart, so
        that they come back about as fast as turns free up instead of all at once."""
        share = rate * self._share.fraction
        if share <= 0:
            return self._max_wait
        back = max(now + self._max_wait, self._sent_away.get(webhook_id, -math.inf) + 1 / share)
        self._sent_away[webhook_id] = back
        return back - now


class Concurrency:
    """One webhook's limit of concurrent attempts, adapted AIMD-style to what the endpoint answers."""

    __slots__ = ("_maximum", "_probing", "_successes", "_value", "_window", "epoch")

    def __init__(self, *, initial: int, maximum: int, window: int) -> None:
        self._maximum = maximum
        self._value = float(min(initial, maximum))
        self._window = window
        self._successes = 0
        self._probing = True  # the slow start: until the first "too much"
        self.epoch = 0  # changes at every decrease; an attempt notes it when it starts

    @property
    def limit(self) -> int:
        """Attempts that may run at once now."""
        return int(self._value)

    def succeeded(self) -> bool:
        """Count a success; True when it raised the limit."""
        self._successes += 1
        if self._value >= self._maximum:
            return False
        if not self._probing and self._successes < max(self._window, self.limit):
            return False
        self._successes = 0
        self._value += 1
        return True

    def overloaded(self, epoch: int) -> bool:
        """The endpoint said "too much" to an attempt started at ``epoch``: halve the limit, once per epoch
        (the attempts already running at the old limit do not halve it again). True when it changed."""
        if epoch != self.epoch:
            return False
        self.epoch += 1
        self._successes = 0
        self._probing = False
        before = self.limit
        self._value = max(1.0, self._value / 2)
        return self.limit != before
