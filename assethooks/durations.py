"""Durations as people write them (``5s``, ``30m``, ``2h``, ``30d``, ``250ms``) and back."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from assethooks.errors import ConfigError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")


def parse_duration(text: str | float) -> float:
    """Return the number of seconds in ``text`` (``"90"``, ``"1.5s"``, ``"5m"``, ``"2h"``, ``"30d"``).

    A bare number means seconds. Raises ``ConfigError`` for anything else or a negative value.
    """
    if isinstance(text, int | float):
        if text < 0:
            raise ConfigError(f"duration must not be negative: {text}")
        return float(text)
    match = _DURATION.match(text)
    if match is None:
        raise ConfigError(f"not a duration: {text!r} (use e.g. 250ms, 5s, 30m, 2h, 30d)")
    number, unit = match.groups()
    return float(number) * _UNITS[unit or "s"]


def format_duration(seconds: float) -> str:
    """Write ``seconds`` in the largest unit that divides it exactly: 300 -> ``5m``, 1.5 -> ``1500ms``."""
    millis = round(seconds * 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if millis and millis % (size * 1000) == 0:
            return f"{millis // (size * 1000)}{unit}"
    return f"{millis}ms"


def parse_moment(text: str, now: datetime) -> datetime:
    """Read a point in time: an ISO 8601 time (UTC when it has no offset) or a duration ago (``2h``).

    ``now`` is the reference for relative values; it must be timezone-aware. The result is in UTC; a time
    whose UTC instant falls outside years 1 to 9999 raises ``ConfigError``, as anything unreadable does.
    """
    try:
        return (now - timedelta(seconds=parse_duration(text))).astimezone(UTC)
    except OverflowError:
        raise ConfigError(f"not a time: {text!r} is too long ago") from None
    except ConfigError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"not a time: {text!r} (use an ISO 8601 time or a duration ago like 2h)") from None
    try:
        return (moment if moment.tzinfo else moment.replace(tzinfo=now.tzinfo)).astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-23:59 is after the last representable instant
        raise ConfigError(f"not a time: {text!r} is out of range (years 1 to 9999 in UTC)") from None
