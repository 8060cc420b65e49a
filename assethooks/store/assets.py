"""The asset-state projection and the alert claims in the SQL store."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import date, datetime, timedelta
from functools import partial

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from assethooks.alerts import Alert, AssetState, FieldNames, apply
from assethooks.errors import NotFoundError
from assethooks.store.db import guarded
from assethooks.store.models import AlertRow, AlertRunRow, AssetStateRow
from schemas.events import AssetEvent

log = logging.getLogger(__name__)
MAX_ASSET_ID = 100  # the projection's key column


def _state(row: AssetStateRow) -> AssetState:
    return AssetState(
        asset_id=row.asset_id,
        snapshot=row.snapshot,
        gone=row.gone,
        warranty_end=None if row.warranty_end is None else date.fromisoformat(row.warranty_end),
        maintenance_date=None if row.maintenance_date is None else date.fromisoformat(row.maintenance_date),
        checkout_key=row.checkout_key,
        checkout_due=row.checkout_due,
        quantity=row.quantity,
        min_quantity=row.min_quantity,
        stock_drops=row.stock_drops,
        last_partition=row.last_partition,
        last_offset=row.last_offset,
    )


def _fill(row: AssetStateRow, state: AssetState, now: datetime) -> None:
    values = asdict(state)
    for name in ("warranty_end", "maintenance_date"):
        values[name] = None if values[name] is None else values[name].isoformat()
    for name, value in values.items():
        setattr(row, name, value)
    row.updated_at = now


ProjectedItem = tuple[str, AssetEvent, tuple[int, int]]  # asset id, event, (partition, offset)


def project(engine: Engine, items: Sequence[ProjectedItem], fields: FieldNames, now: datetime) -> int:
    """Apply events, in order, to the projection in one transaction; return how many states changed.

    No event can stop the projection: one whose facts cannot be applied or stored is skipped with a
    warning (the event is still delivered; only the alerts do not see it). When the database refuses a
    value, the batch is applied again one event at a time, which is safe since applying twice changes
    nothing.
    """
    usable = [item for item in items if _storable_id(item)]
    try:
        return guarded(engine, partial(_apply_batch, engine, usable, fields, now))
    except DBAPIError:
        pass  # a value the database refuses (connection problems are StoreUnavailableError)
    changed = 0
    for item in usable:
        try:
            changed += guarded(engine, partial(_apply_batch, engine, [item], fields, now))
        except DBAPIError as exc:
            _skipped(item, str(exc.orig or exc).strip().splitlines()[0])
    return changed


def _storable_id(item: ProjectedItem) -> bool:
    if len(item[0]) <= MAX_ASSET_ID:
        return True
    _skipped(item, f"its asset id is longer than {MAX_ASSET_ID} characters")
    return False


def _skipped(item: ProjectedItem, why: str) -> None:
    asset_id, event, (partition, offset) = item
    log.warning(
        "asset state: %s at %d@%d for asset %.40s not projected: %s",
        event.event.value,
        partition,
        offset,
        asset_id,
        why,
    )


def _apply_batch(engine: Engine, items: Sequence[ProjectedItem], fields: FieldNames, now: datetime) -> int:
    with Session(engine) as session, session.begin():
        ids = {asset_id for asset_id, _, _ in items}
        rows = {
            row.asset_id: row
            for row in session.scalars(select(AssetStateRow).where(AssetStateRow.asset_id.in_(ids)))
        }
        states = {asset_id: _state(row) for asset_id, row in rows.items()}
        changed: set[str] = set()
        for item in items:
            asset_id, event, position = item
            try:
                after = apply(states.get(asset_id), event, asset_id, position, fields)
            except Exception as exc:  # a rule that fails on some value must not stop the projection
                log.exception("asset state rule failed")
                _skipped(item, f"{type(exc).__name__}: {exc}")
                continue
            if after is not None:
                states[asset_id] = after
                changed.add(asset_id)
        for asset_id in changed:
            row = rows.get(asset_id) or AssetStateRow(asset_id=asset_id)
            _fill(row, states[asset_id], now)
            session.add(row)
        return len(changed)


def load_states(engine: Engine, asset_ids: Iterable[str]) -> dict[str, AssetState]:
    """The projected states of ``asset_ids`` that exist."""
    wanted = list(set(asset_ids))

    def run() -> dict[str, AssetState]:
        with Session(engine) as session:
            rows = session.scalars(select(AssetStateRow).where(AssetStateRow.asset_id.in_(wanted)))
            return {row.asset_id: _state(row) for row in rows}

    return guarded(engine, run) if wanted else {}


def all_states(engine: Engine) -> list[AssetState]:
    """Every projected state, by asset id."""

    def run() -> list[AssetState]:
        with Session(engine) as session:
            return [
                _state(row) for row in session.scalars(select(AssetStateRow).order_by(AssetStateRow.asset_id))
            ]

    return guarded(engine, run)


def get_state(engine: Engine, asset_id: str) -> AssetState:
    """One asset's projected state; ``NotFoundError`` when the projection never saw it."""
    found = load_states(engine, [asset_id])
    if asset_id not in found:
        raise NotFoundError(f"no projected state for asset {asset_id}")
    return found[asset_id]


def clear_states(engine: Engine) -> int:
    """Forget the whole projection (before rebuilding it from the topic); return how many rows went."""

    def run() -> int:
        with engine.begin() as connection:
            return connection.execute(delete(AssetStateRow)).rowcount

    return guarded(engine, run)


def claim(engine: Engine, alert: Alert, now: datetime, claimer: str, lease: float) -> bool:
    """Claim ``alert``'s condition for ``claimer``: ``True`` when it was never claimed, or its claim is
    older than ``lease`` seconds and was never sent (a producer crashed before publishing)."""

    def run() -> bool:
        values = {
            "key": alert.key,
            "event": alert.event.value,
            "asset_id": alert.asset_id,
            "claimed_at": now,
            "claimed_by": claimer,
            "sent_at": None,
        }
        insert = sqlite.insert if engine.dialect.name == "sqlite" else postgresql.insert
        with engine.begin() as connection:
            if connection.execute(insert(AlertRow).values(values).on_conflict_do_nothing()).rowcount:
                return True
            stale = (
                update(AlertRow)
                .where(
                    AlertRow.key == alert.key,
                    AlertRow.sent_at.is_(None),
                    AlertRow.claimed_at < now - timedelta(seconds=lease),
                )
                .values(claimed_at=now, claimed_by=claimer)
            )
            return bool(connection.execute(stale).rowcount)

    return guarded(engine, run)


def mark_sent(engine: Engine, key: str, now: datetime) -> None:
    """Record that ``key``'s alert was published."""

    def run() -> None:
        with engine.begin() as connection:
            connection.execute(update(AlertRow).where(AlertRow.key == key).values(sent_at=now))

    guarded(engine, run)


def record_alerts_run(engine: Engine, run: AlertRunRow) -> None:
    """Keep what one run of the alerts producer did (``assethooks status`` shows the last)."""

    def write() -> None:
        with Session(engine) as session, session.begin():
            session.add(run)

    guarded(engine, write)


def last_alerts_run(engine: Engine) -> AlertRunRow | None:
    """The newest run of the alerts producer, if any."""

    def read() -> AlertRunRow | None:
        with Session(engine, expire_on_commit=False) as session:
            return session.scalars(select(AlertRunRow).order_by(AlertRunRow.id.desc()).limit(1)).first()

    return guarded(engine, read)


def sent_alerts(engine: Engine, asset_id: str | None = None) -> list[tuple[str, str, datetime | None]]:
    """The alert conditions claimed so far: key, event, when sent (``None`` while only claimed)."""

    def run() -> list[tuple[str, str, datetime | None]]:
        statement = select(AlertRow).order_by(AlertRow.claimed_at)
        if asset_id is not None:
            statement = statement.where(AlertRow.asset_id == asset_id)
        with Session(engine) as session:
            return [(row.key, row.event, row.sent_at) for row in session.scalars(statement)]

    return guarded(engine, run)
