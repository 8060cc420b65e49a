"""Slowing down guesses of the admin token: failed attempts counted per client address.

A client may get the token wrong ``allowed_failures`` times in a row at full speed; after that it must
wait before its next attempt is even looked at: ``first_delay``, twice as long after the next failure,
and so on up to ``max_delay``. While it waits every attempt is refused (the caller answers 429 with
``Retry-After``) and not counted, so the right token does not get through either. A right token clears
the client; so does a quiet ``forget_after`` since its last failure. The table keeps at most
``max_clients`` clients, dropping the ones that failed least recently, so a flood of addresses costs
bounded memory.

The clock is a parameter (monotonic seconds); the object is used from one event loop and takes no lock.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

Seconds = Callable[[], float]

ALLOWED_FAILURES = 5
MAX_CLIENTS = 10_000
FORGET_AFTER = 3600.0
_MAX_DOUBLINGS = 40  # 2**40 first delays is beyond any sane max_delay; keeps the arithmetic small


def client_key(address: str | None) -> str:
    """Whom failures are counted against: an IPv4 address, the /64 network of an IPv6 address (one host
    commonly holds a whole /64), or the text given when it is not an address."""
    if address is None:
        return "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def delay_after(failures: int, *, allowed_failures: int, first_delay: float, max_delay: float) -> float:
    """How long a client waits after its ``failures``-th failure in a row: nothing before the
    ``allowed_failures``-th, then ``first_delay`` doubling with each further failure, up to
    ``max_delay``."""
    if failures < allowed_failures:
        return 0.0
    doublings = min(failures - allowed_failures, _MAX_DOUBLINGS)
    return min(max_delay, first_delay * float(2**doublings))


@dataclass
class _Client:
    failures: int
    last_failure: float
    wait_until: float


class LoginThrottle:
    """Failed token attempts per client, and how long each must wait before its next one."""

    def __init__(
        self,
        *,
        first_delay: float = 1.0,
        max_delay: float = 300.0,
        allowed_failures: int = ALLOWED_FAILURES,
        forget_after: float = FORGET_AFTER,
        max_clients: int = MAX_CLIENTS,
        clock: Seconds = time.monotonic,
    ) -> None:
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._allowed_failures = allowed_failures
        self._forget_after = max(forget_after, max_delay)  # never forget a client that is still waiting
        self._max_clients = max_clients
        self._clock = clock
        self._clients: OrderedDict[str, _Client] = OrderedDict()  # least recently failed first

    def __len__(self) -> int:
        return len(self._clients)

    def retry_after(self, client: str) -> int:
        """Whole seconds ``client`` must wait before an attempt is looked at; 0 when it may try now."""
        record = self._clients.get(client)
        if record is None:
            return 0
        return max(0, math.ceil(record.wait_until - self._clock()))

    def failed(self, client: str) -> int:
        """Count a wrong token from ``client``; return the whole seconds it must now wait (0: none)."""
        now = self._clock()
        self._forget_quiet_clients(now)
        record = self._clients.pop(client, None) or _Client(0, now, now)
        record.failures += 1
        record.last_failure = now
        record.wait_until = now + delay_after(
            record.failures,
            allowed_failures=self._allowed_failures,
            first_delay=self._first_delay,
            max_delay=self._max_delay,
        )
        self._clients[client] = record  # to the end: the most recently failed
        while len(self._clients) > self._max_clients:
            self._clients.popitem(last=False)
        return self.retry_after(client)

    def succeeded(self, client: str) -> None:
        """A right token from ``client``: its failures are forgiven."""
        self._clients.pop(client, None)

    def _forget_quiet_clients(self, now: float) -> None:
        while self._clients:
            oldest = next(iter(self._clients.values()))
            if now - oldest.last_failure < self._forget_after:
                return
            self._clients.popitem(last=False)
