"""Endpoint health as the CLI and the API show it: one summary line per webhook and the whole picture as
plain JSON. The numbers come from ``assethooks.store.health``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from assethooks.clock import utc_now
from assethooks.store.health import Health, Window, webhook_health


def health(
    engine: Engine,
    webhook_ids: Sequence[int] | None = None,
    *,
    hours: bool = False,
    now: datetime | None = None,
) -> list[Health]:
    """The health of ``webhook_ids`` (every webhook when ``None``), with the hourly counts when ``hours``
    (for one webhook)."""
    return webhook_health(engine, now=now or utc_now(), webhook_ids=webhook_ids, hours=hours)


def summary(found: Health) -> str:
    """One line for a table: ``ok``, ``failing since …``, ``circuit open until …``, ``disabled: …``."""
    state = found.state
    if state == "disabled":
        return f"disabled: {found.disabled_reason}"
    if state == "circuit-open":
        if found.circuit == "open" and found.circuit_open_until is not None:
            return f"circuit open until {_clock(found.circuit_open_until)}{_waiting(found)}"
        return f"circuit half-open: a probe is due{_waiting(found)}"
    if state == "failing" and found.failing_since is not None:
        age = _age(found.at, found.failing_since)
        return f"failing since {_clock(found.failing_since)} ({age}){_waiting(found)}"
    if state == "idle":
        return "no deliveries yet"
    return state + _waiting(found)


def _waiting(found: Health) -> str:
    parts = []
    if found.retrying:
        parts.append(f"{found.retrying:,} retrying")
    if found.dead_letters:
        parts.append(f"{found.dead_letters:,} dead")
    return f", {', '.join(parts)}" if parts else ""


def _clock(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _age(now: datetime, since: datetime) -> str:
    """How long since ``since``, to the minute: ``45s``, ``12m``, ``2h5m``, ``3d4h``."""
    seconds = max(0, int((now - since).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours else f"{days}d"


def _window(window: Window) -> dict[str, Any]:
    return {
        "attempts": window.attempts,
        "succeeded": window.succeeded,
        "failed": window.failed,
        "success_rate": None if window.success_rate is None else round(window.success_rate, 4),
        "mean_ms": None if window.mean_ms is None else round(window.mean_ms, 1),
    }


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def health_json(found: Health) -> dict[str, Any]:
    """The whole picture as plain JSON (the API's and ``--json``'s form)."""
    last = found.last_attempt
    plain: dict[str, Any] = {
        "webhook_id": found.webhook_id,
        "at": _time(found.at),
        "state": found.state,
        "summary": summary(found),
        "active": found.active,
        "disabled_reason": found.disabled_reason,
        "failing_since": _time(found.failing_since),
        "circuit": found.circuit,
        "circuit_open_until": _time(found.circuit_open_until),
        "circuit_changed_at": _time(found.circuit_changed_at),
        "last_hour": _window(found.last_hour),
        "last_day": _window(found.last_day),
        "last_attempt": None
        if last is None
        else {
            "at": _time(last.at),
            "success": last.success,
            "status_code": last.status_code,
            "duration_ms": round(last.duration_ms, 1),
            "error": last.error,
        },
        "retrying": found.retrying,
        "dead_letters": found.dead_letters,
    }
    if found.hours:
        plain["hours"] = [
            {"start": _time(hour.start), "succeeded": hour.succeeded, "failed": hour.failed}
            for hour in found.hours
        ]
    return plain
