"""Durations as people write them (``5s``, ``30m``, ``2h``, ``30d``, ``250ms``) and back, and points in
time as people give them (ISO 8601, or a duration ago).

Both are bounded so that whatever is computed from them stays a valid time: a duration is at most
``MAX_DURATION`` (100 years) and a time lies between ``EARLIEST`` and ``LATEST``; anything else is refused
with a one-line ``ConfigError`` rather than overflowing later in a store or a ``timedelta``.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, tzinfo

from assethooks.errors import ConfigError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$", re.ASCII)
MAX_DURATION = 36500 * 86400.0  # 100 years, in seconds
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
_SHOWN = 40  # characters of a refused value quoted in a message


def _quoted(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…")


def parse_duration(text: str | float) -> float:
    """Return the number of seconds in ``text`` (``"90"``, ``"1.5s"``, ``"5m"``, ``"2h"``, ``"30d"``).

    A bare number means seconds. Raises ``ConfigError`` for anything else, a negative value or one longer
    than ``MAX_DURATION``.
    """
    if isinstance(text, int | float):
        seconds = float(text)
        if math.isnan(seconds) or seconds < 0:
            raise ConfigError(f"duration must not be negative: {text}")
    else:
        match = _DURATION.match(text)
        if match is None:
            raise ConfigError(f"not a duration: {_quoted(text)} (use e.g. 250ms, 5s, 30m, 2h, 30d)")
        number, unit = match.groups()
        seconds = float(number) * _UNITS[unit or "s"]
    if seconds > MAX_DURATION:
        raise ConfigError(
            f"duration too long: {_quoted(str(text))} (at most {format_duration(MAX_DURATION)})"
        )
    return seconds


def format_duration(seconds: float) -> str:
    """Write ``seconds`` in the largest unit that divides it exactly: 300 -> ``5m``, 1.5 -> ``1500ms``,
    0 -> ``0s``."""
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if millis % (size * 1000) == 0:
            return f"{millis // (size * 1000)}{unit}"
    return f"{millis}ms"


def _read_iso(text: str, default_zone: tzinfo) -> datetime | None:
    """An ISO 8601 time within range, ``None`` when ``text`` is not ISO 8601 at all."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=default_zone)
    try:
        in_range = EARLIEST <= moment.astimezone(UTC) < LATEST
    except OverflowError:  # an offset pushes it past year 1 or 9999
        in_range = False
    if not in_range:
        raise ConfigError(f"time out of range: {_quoted(text)} (years {EARLIEST.year} to {LATEST.year - 1})")
    return moment


def parse_time(text: str, default_zone: tzinfo = UTC) -> datetime:
    """Read an ISO 8601 time (in ``default_zone`` when it has no offset) between ``EARLIEST`` and
    ``LATEST``; raise ``ConfigError`` otherwise."""
    moment = _read_iso(text, default_zone)
    if moment is None:
        raise ConfigError(f"not a time: {_quoted(text)} (use an ISO 8601 time)")
    return moment


def parse_moment(text: str, now: datetime) -> datetime:
    """Read a point in time: an ISO 8601 time (UTC when it has no offset) or a duration ago (``2h``).

    ``now`` is the reference for relative values; it must be timezone-aware. The result is in UTC. Raises
    ``ConfigError`` for anything else, and for times out of range (a duration ago is at most
    ``MAX_DURATION``).
    """
    if _DURATION.match(text):
        try:
            return (now - timedelta(seconds=parse_duration(text))).astimezone(UTC)
        except ConfigError:
            raise ConfigError(
                f"not a time: {_quoted(text)} is too long ago (at most {format_duration(MAX_DURATION)})"
            ) from None
    moment = _read_iso(text, now.tzinfo or UTC)
    if moment is None:
        raise ConfigError(f"not a time: {_quoted(text)} (use an ISO 8601 time or a duration ago like 2h)")
    return moment.astimezone(UTC)
