"""The alert rules, as pure functions: how an asset event changes an asset's projected state, and which
``alert.*`` events a set of states calls for at a given time (the clock is a parameter).

Each alert has a key naming its condition, so that it is sent once per condition:

- ``alert.warranty_expiring``: once per asset and warranty end date, from ``warranty_window`` before it;
- ``alert.maintenance_due``: once per asset and scheduled date, from ``maintenance_window`` before it,
  unless the maintenance was completed;
- ``alert.checkout_overdue``: once per checkout whose due time passed while the asset is still out;
- ``alert.low_stock``: once per drop of the quantity below the minimum; a restock to the minimum or above
  arms it again.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from assethooks.settings import Settings
from schemas.events import AssetEvent, EventName

ALERT_SOURCE = "assethooks.alerts"
MAX_CHECKOUT_KEY = 80  # an alert key holds it with the asset id (at most 100) in 200 characters
_GONE = {EventName.ASSET_DELETED, EventName.ASSET_LIQUIDATED}


@dataclass(frozen=True)
class FieldNames:
    """Where the facts are, in an event's ``data`` (looked up first) or ``asset``."""

    warranty_end: str = "warranty_end_date"
    maintenance_date: str = "maintenance_date"
    checkout_due: str = "due_date"
    checkout_id: str = "checkout_id"
    quantity: str = "quantity"
    min_quantity: str = "min_quantity"

    @classmethod
    def from_settings(cls, settings: Settings) -> FieldNames:
        """The field names configured by ``ASSETHOOKS_FIELD_*``."""
        return cls(
            warranty_end=settings.field_warranty_end,
            maintenance_date=settings.field_maintenance_date,
            checkout_due=settings.field_checkout_due,
            checkout_id=settings.field_checkout_id,
            quantity=settings.field_quantity,
            min_quantity=settings.field_min_quantity,
        )


@dataclass(frozen=True)
class AssetState:
    """What the alerts know of one asset."""

    asset_id: str
    snapshot: dict[str, Any] = field(default_factory=dict)
    gone: bool = False
    warranty_end: date | None = None
    maintenance_date: date | None = None
    checkout_key: str | None = None
    checkout_due: datetime | None = None
    quantity: float | None = None
    min_quantity: float | None = None
    stock_drops: int = 0
    last_partition: int = -1
    last_offset: int = -1

    @property
    def low(self) -> bool:
        """True when the quantity is below its minimum."""
        return (
            self.quantity is not None and self.min_quantity is not None and self.quantity < self.min_quantity
        )


def _lookup(event: AssetEvent, name: str) -> tuple[bool, Any]:
    for source in (event.data, event.asset):
        if name in source:
            return True, source[name]
    return False, None


def _date(value: Any) -> date | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value).date() if "T" in value else date.fromisoformat(value[:10])
    except ValueError:
        return None


def _moment(value: Any) -> datetime | None:
    """A time in UTC; ``None`` when ``value`` is not one or lies outside the years 1 to 9999 in UTC."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:  # a bare date or a local time: read as UTC, end of day for a date
            moment = moment.replace(tzinfo=UTC)
            if len(value) == 10:
                moment += timedelta(days=1)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _number(value: Any) -> float | None:
    """A finite number; ``None`` for anything else, a number beyond a double's range included."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _checkout_key(value: Any) -> str:
    """A checkout id as a key short enough for an alert's key (long ids are replaced by their digest)."""
    text = str(value)
    if len(text) <= MAX_CHECKOUT_KEY:
        return text
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def apply(
    state: AssetState | None, event: AssetEvent, asset_id: str, position: tuple[int, int], fields: FieldNames
) -> AssetState | None:
    """The state after ``event`` (read at ``position``: partition, offset), or ``None`` when the event
    changes nothing (an alert event, or one already applied: redelivery leaves the state as it is)."""
    if event.event.value.startswith("alert."):
        return None
    current = state or AssetState(asset_id=asset_id)
    partition, offset = position
    if partition == current.last_partition and offset <= current.last_offset:
        return None
    changes: dict[str, Any] = {"last_partition": partition, "last_offset": offset}
    for rule in (_lifecycle, _dates, _checkout, _stock):
        changes.update(rule(event, fields, position))
    after = replace(current, **changes)
    if after.low and not current.low:
        after = replace(after, stock_drops=current.stock_drops + 1)
    return after


def _lifecycle(event: AssetEvent, _fields: FieldNames, _position: tuple[int, int]) -> dict[str, Any]:
    changes: dict[str, Any] = {"snapshot": dict(event.asset)} if event.asset else {}
    if event.event in _GONE:
        changes["gone"] = True
    elif event.event is EventName.ASSET_CREATED:
        changes["gone"] = False
    return changes


def _dates(event: AssetEvent, fields: FieldNames, _position: tuple[int, int]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    found, value = _lookup(event, fields.warranty_end)
    if found:
        changes["warranty_end"] = _date(value)
    found, value = _lookup(event, fields.maintenance_date)
    if event.event is EventName.ASSET_MAINTENANCE_COMPLETED:
        changes["maintenance_date"] = None
    elif found:
        changes["maintenance_date"] = _date(value)
    return changes


def _checkout(event: AssetEvent, fields: FieldNames, position: tuple[int, int]) -> dict[str, Any]:
    if event.event is EventName.ASSET_CHECKED_IN:
        return {"checkout_key": None, "checkout_due": None}
    if event.event is not EventName.ASSET_CHECKED_OUT:
        return {}
    found, checkout = _lookup(event, fields.checkout_id)
    key = _checkout_key(checkout) if found and checkout is not None else f"{position[0]}-{position[1]}"
    return {"checkout_key": key, "checkout_due": _moment(_lookup(event, fields.checkout_due)[1])}


def _stock(event: AssetEvent, fields: FieldNames, _position: tuple[int, int]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name, attribute in ((fields.quantity, "quantity"), (fields.min_quantity, "min_quantity")):
        found, value = _lookup(event, name)
        if found:
            changes[attribute] = _number(value)
    return changes


@dataclass(frozen=True)
class Alert:
    """An alert to publish: its condition key, event, asset, and details for ``data``."""

    key: str
    event: EventName
    asset_id: str
    snapshot: dict[str, Any]
    details: dict[str, Any]


def due_alerts(
    states: list[AssetState], now: datetime, *, warranty_window: timedelta, maintenance_window: timedelta
) -> list[Alert]:
    """The alerts ``states`` call for at ``now``, each with the key of its condition."""
    today = now.date()
    found: list[Alert] = []
    for state in states:
        if state.gone:
            continue
        asset = state.asset_id
        if state.warranty_end is not None and today <= state.warranty_end <= (now + warranty_window).date():
            found.append(
                Alert(
                    f"warranty:{asset}:{state.warranty_end.isoformat()}",
                    EventName.ALERT_WARRANTY_EXPIRING,
                    asset,
                    state.snapshot,
                    {
                        "warranty_end_date": state.warranty_end.isoformat(),
                        "days_left": (state.warranty_end - today).days,
                    },
                )
            )
        if (
            state.maintenance_date is not None
            and today <= state.maintenance_date <= (now + maintenance_window).date()
        ):
            found.append(
                Alert(
                    f"maintenance:{asset}:{state.maintenance_date.isoformat()}",
                    EventName.ALERT_MAINTENANCE_DUE,
                    asset,
                    state.snapshot,
                    {
                        "maintenance_date": state.maintenance_date.isoformat(),
                        "days_left": (state.maintenance_date - today).days,
                    },
                )
            )
        if state.checkout_key is not None and state.checkout_due is not None and state.checkout_due < now:
            found.append(
                Alert(
                    f"overdue:{asset}:{state.checkout_key}",
                    EventName.ALERT_CHECKOUT_OVERDUE,
                    asset,
                    state.snapshot,
                    {
                        "due_date": state.checkout_due.isoformat(),
                        "overdue_hours": round((now - state.checkout_due).total_seconds() / 3600, 1),
                    },
                )
            )
        if state.low:
            found.append(
                Alert(
                    f"low_stock:{asset}:{state.stock_drops}",
                    EventName.ALERT_LOW_STOCK,
                    asset,
                    state.snapshot,
                    {"quantity": state.quantity, "min_quantity": state.min_quantity},
                )
            )
    return found


def envelope(alert: Alert, now: datetime) -> dict[str, Any] | None:
    """The seed's envelope for ``alert``, or ``None`` when its asset id is not a 64-bit number (the
    envelope's ``asset_id``)."""
    try:
        asset_id = int(alert.asset_id)
    except ValueError:
        return None
    if not -(2**63) <= asset_id < 2**63:  # what the envelope's asset_id takes
        return None
    return {
        "event": alert.event.value,
        "timestamp": now.astimezone(UTC).isoformat(timespec="seconds"),
        "source": ALERT_SOURCE,
        "asset_id": asset_id,
        "asset": alert.snapshot,
        "data": {**alert.details, "alert_key": alert.key},
    }
