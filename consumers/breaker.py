"""Per-endpoint circuit breakers (pure logic: the clock is a parameter).

A webhook whose endpoint fails ``threshold`` times in a row (timeouts, connection failures, 5xx, 429) has
its circuit opened: for ``cooldown`` seconds its deliveries are not sent but go to a retry tier that waits
at least that long, without using an attempt. Then one probe is let through: a success closes the circuit,
a failure opens it again for twice as long (up to ``max_cooldown``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Transition(StrEnum):
    """A change of a circuit worth telling the operators about."""

    OPENED = "opened"
    REOPENED = "reopened"  # the probe failed: open again, for longer
    CLOSED = "closed"


@dataclass
class _Circuit:
    failures: int = 0
    open_until: float | None = None  # set while open or half-open
    cooldown: float = 0.0
    probing: bool = False


class Breakers:
    """The circuits of every endpoint, by webhook id."""

    def __init__(self, *, threshold: int, cooldown: float, max_cooldown: float) -> None:
        self._threshold = threshold
        self._cooldown = cooldown
        self._max_cooldown = max_cooldown
        self._circuits: dict[int, _Circuit] = {}

    def allow(self, webhook_id: int, now: float) -> bool:
        """True when an attempt may be sent now: the circuit is closed, or this is the probe."""
        circuit = self._circuits.get(webhook_id)
        if circuit is None or circuit.open_until is None:
            return True
        if now < circuit.open_until or circuit.probing:
            return False
        circuit.probing = True
        return True

    def record(self, webhook_id: int, *, ok: bool, trips: bool, now: float) -> Transition | None:
        """Count an attempt's outcome; ``trips`` says whether its failure counts against the endpoint. Returns
        the circuit's change, if any: opened, opened again for longer (a failed probe), or closed."""
        if self._threshold <= 0:
            return None
        circuit = self._circuits.get(webhook_id)
        if circuit is None:
            if ok or not trips:  # the common case: a healthy endpoint, nothing to remember
                return None
            circuit = self._circuits[webhook_id] = _Circuit()
        if ok or (not trips and circuit.probing):  # an answer to the probe: the endpoint is up again
            del self._circuits[webhook_id]
            return Transition.CLOSED if circuit.open_until is not None else None
        if not trips:
            return None
        return self._failed(circuit, now)

    def _failed(self, circuit: _Circuit, now: float) -> Transition | None:
        if circuit.probing:
            circuit.cooldown = min(circuit.cooldown * 2, self._max_cooldown)
            circuit.open_until = now + circuit.cooldown
            circuit.probing = False
            return Transition.REOPENED
        circuit.failures += 1
        if circuit.open_until is None and circuit.failures >= self._threshold:
            circuit.cooldown = self._cooldown
            circuit.open_until = now + circuit.cooldown
            return Transition.OPENED
        return None

    def remaining(self, webhook_id: int, now: float) -> float:
        """Seconds until the circuit lets a probe through (0 when closed or due)."""
        circuit = self._circuits.get(webhook_id)
        if circuit is None or circuit.open_until is None:
            return 0.0
        return max(0.0, circuit.open_until - now)

    def is_open(self, webhook_id: int) -> bool:
        """True while the webhook's circuit is open or half-open."""
        circuit = self._circuits.get(webhook_id)
        return circuit is not None and circuit.open_until is not None
