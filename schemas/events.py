"""The asset event envelope of the seed documentation (§3 event names, §4 payload format)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from assethooks.errors import InvalidEventError


class EventName(StrEnum):
    """The 21 events of the seed's table a webhook can subscribe to: 17 ``asset.*`` and 4 ``alert.*``."""

    ASSET_CREATED = "asset.created"
    ASSET_UPDATED = "asset.updated"
    ASSET_DELETED = "asset.deleted"
    ASSET_ALLOCATED = "asset.allocated"
    ASSET_REVOKED = "asset.revoked"
    ASSET_CHECKED_OUT = "asset.checked_out"
    ASSET_CHECKED_IN = "asset.checked_in"
    ASSET_RESERVED = "asset.reserved"
    ASSET_RESERVATION_APPROVED = "asset.reservation_approved"
    ASSET_RESERVATION_REJECTED = "asset.reservation_rejected"
    ASSET_MAINTENANCE_SCHEDULED = "asset.maintenance_scheduled"
    ASSET_MAINTENANCE_COMPLETED = "asset.maintenance_completed"
    ASSET_TRANSFERRED = "asset.transferred"
    ASSET_LOST = "asset.lost"
    ASSET_BROKEN = "asset.broken"
    ASSET_WARRANTY = "asset.warranty"
    ASSET_LIQUIDATED = "asset.liquidated"
    ALERT_WARRANTY_EXPIRING = "alert.warranty_expiring"
    ALERT_MAINTENANCE_DUE = "alert.maintenance_due"
    ALERT_CHECKOUT_OVERDUE = "alert.checkout_overdue"
    ALERT_LOW_STOCK = "alert.low_stock"


# The groups of the seed's events table, in its order (used by listings and the events picker).
EVENT_GROUPS: Final[dict[str, tuple[EventName, ...]]] = {
    "Asset Lifecycle": (EventName.ASSET_CREATED, EventName.ASSET_UPDATED, EventName.ASSET_DELETED),
    "Allocation & Assignment": (EventName.ASSET_ALLOCATED, EventName.ASSET_REVOKED),
    "Check-in/Check-out": (EventName.ASSET_CHECKED_OUT, EventName.ASSET_CHECKED_IN),
    "Reservations": (
        EventName.ASSET_RESERVED,
        EventName.ASSET_RESERVATION_APPROVED,
        EventName.ASSET_RESERVATION_REJECTED,
    ),
    "Maintenance & Transfers": (
        EventName.ASSET_MAINTENANCE_SCHEDULED,
        EventName.ASSET_MAINTENANCE_COMPLETED,
        EventName.ASSET_TRANSFERRED,
    ),
    "Loss, Damage, Disposal": (
        EventName.ASSET_LOST,
        EventName.ASSET_BROKEN,
        EventName.ASSET_WARRANTY,
        EventName.ASSET_LIQUIDATED,
    ),
    "Alerts (via Cron)": (
        EventName.ALERT_WARRANTY_EXPIRING,
        EventName.ALERT_MAINTENANCE_DUE,
        EventName.ALERT_CHECKOUT_OVERDUE,
        EventName.ALERT_LOW_STOCK,
    ),
}

DEFAULT_SOURCE: Final = "perfex_assets_module"
TEST_EVENT: Final = "webhook.test"
_ISO_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")
AssetId = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]  # a database id: 64 bits


class AssetEvent(BaseModel):
    """One event as published to ``asset-events``; unknown extra fields are kept, not rejected."""

    model_config = ConfigDict(frozen=True, extra="allow")

    event: EventName
    timestamp: AwareDatetime
    source: str
    asset_id: AssetId | None
    asset: dict[str, Any]
    data: dict[str, Any]

    @field_validator("timestamp", mode="before")
    @classmethod
    def _iso_8601(cls, value: Any) -> Any:
        if isinstance(value, datetime):
            return value
        if not isinstance(value, str) or not _ISO_DATE_TIME.match(value):
            raise ValueError(
                "must be an ISO 8601 date and time with its offset, e.g. 2025-02-04T12:00:00+00:00"
            )
        return value

    @model_validator(mode="after")
    def _asset_id_null_only_when_deleted(self) -> AssetEvent:
        if self.asset_id is None and self.event is not EventName.ASSET_DELETED:
            raise ValueError(f"asset_id may be null only for {EventName.ASSET_DELETED.value}")
        return self

    @property
    def asset_key(self) -> str | None:
        """The asset id as the Kafka key: ``asset_id``, or ``asset.id`` for deleted assets."""
        if self.asset_id is not None:
            return str(self.asset_id)
        fallback = self.asset.get("id")
        return None if fallback is None or isinstance(fallback, bool) else str(fallback)

    def to_json_bytes(self) -> bytes:
        """The compact JSON body of this event, as published and delivered."""
        return self.model_dump_json(exclude_none=False).encode()


def _reason(error: ValidationError) -> str:
    """One line naming the first problem of a failed event validation."""
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    kind = first["type"]
    if kind == "json_invalid":
        return f"not valid JSON: {first['ctx'].get('error', 'parse error')}" if "ctx" in first else "not JSON"
    if kind == "model_type":
        return "not a JSON object"
    if kind == "missing":
        return f"missing field {where!r}"
    if kind == "enum":
        return f"unknown event {first['input']!r}"
    if not where:
        return first["msg"].removeprefix("Value error, ")
    return f"field {where!r}: {first['msg'].removeprefix('Value error, ')}"


def parse_event(raw: bytes | None) -> AssetEvent:
    """Validate a record value as an asset event; raise ``InvalidEventError`` with a one-line reason.

    The value must be strict JSON (RFC 8259), since it is delivered byte for byte and every receiver must
    read it as we do: no ``NaN`` or ``Infinity``, no number too large for a double, no repeated key.
    """
    if not raw:
        raise InvalidEventError("empty record value")
    try:
        event = AssetEvent.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidEventError(_reason(exc)) from None
    _check_strict(raw, event)
    return event


_ENVELOPE_STRINGS = len(AssetEvent.model_fields) + 3  # the six keys, and event, timestamp and source


def _check_strict(raw: bytes, event: AssetEvent) -> None:
    """Refuse what a lenient parse let through: ``NaN``, infinities and numbers that overflow a double,
    and repeated keys (the parse keeps the last, other receivers the first).

    The fast test counts quotes: every JSON string, key or value, has two, so the raw bytes hold twice as
    many quotes as the parsed document has strings exactly when no key was dropped as a repeat and no
    string holds an escaped quote. Otherwise a slower parse that sees every key decides.
    """
    extra = event.model_extra or {}
    strings = _ENVELOPE_STRINGS + _strings(event.asset) + _strings(event.data) + _strings(extra)
    if raw.count(b'"') == 2 * strings:
        return
    try:
        json.loads(raw, object_pairs_hook=_unique_keys)
    except _RepeatedKeyError as exc:
        raise InvalidEventError(f"not strict JSON: key {exc.args[0]!r} appears twice in one object") from None


class _RepeatedKeyError(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _RepeatedKeyError(key)
        found[key] = value
    return found


def _strings(value: Any) -> int:
    """The strings (keys and values) of a parsed JSON value; raise on a number JSON cannot hold (``NaN``
    and infinities: the literals, or a number beyond a double's range)."""
    items: Iterable[Any]
    if type(value) is dict:
        count, items = len(value), value.values()
    elif type(value) is list:
        count, items = 0, value
    else:
        return 0
    for item in items:
        kind = type(item)
        if kind is str:
            count += 1
        elif kind is dict or kind is list:
            count += _strings(item)
        elif kind is float and not math.isfinite(item):
            raise InvalidEventError(
                "not strict JSON: NaN, Infinity or a number too large for a double is not a JSON number"
            )
    return count


def sample_test_event(now: datetime) -> dict[str, Any]:
    """The payload of a test delivery: the seed's envelope with sample asset data (event ``webhook.test``)."""
    return {
        "event": TEST_EVENT,
        "timestamp": now.astimezone(UTC).isoformat(timespec="seconds"),
        "source": DEFAULT_SOURCE,
        "asset_id": 0,
        "asset": {"id": 0, "name": "Sample laptop", "serial_number": "TEST-0000", "status": "ready"},
        "data": {"message": "This is a test delivery from asset-webhooks."},
    }
