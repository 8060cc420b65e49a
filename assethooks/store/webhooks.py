"""Webhook subscriptions in the SQL store: create, read, update, delete, enable, disable."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from assethooks.clock import Clock, utc_now
from assethooks.errors import NotFoundError
from assethooks.store.db import guarded, session_scope
from assethooks.store.models import WebhookRow
from schemas.webhooks import Webhook, WebhookSpec, first_problem

log = logging.getLogger(__name__)


def _to_model(row: WebhookRow) -> Webhook:
    return Webhook(
        id=row.id,
        name=row.name,
        url=row.url,
        events=row.events,
        secret=row.secret,
        headers=row.headers,
        active=row.active,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _valid_or_none(row: WebhookRow) -> Webhook | None:
    try:
        return _to_model(row)
    except ValidationError as exc:
        log.error("webhook %d is stored with invalid fields and is ignored: %s", row.id, first_problem(exc))
        return None


def _fill(row: WebhookRow, spec: WebhookSpec) -> None:
    plain = spec.plain()
    row.name, row.url, row.events = plain["name"], plain["url"], plain["events"]
    row.secret, row.headers, row.active = plain["secret"], plain["headers"], plain["active"]


class WebhookStore:
    """Reads and writes webhook subscriptions; every write is one transaction."""

    def __init__(self, engine: Engine, clock: Clock = utc_now) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._clock = clock

    def create(self, spec: WebhookSpec) -> Webhook:
        """Save a new webhook and return it with its id."""

        def run() -> Webhook:
            now = self._clock()
            row = WebhookRow(created_at=now, updated_at=now)
            _fill(row, spec)
            with session_scope(self._sessions) as session:
                session.add(row)
                session.flush()
                return _to_model(row)

        return guarded(self._engine, run)

    def get(self, webhook_id: int) -> Webhook:
        """The webhook with ``webhook_id``; ``NotFoundError`` when there is none."""

        def run() -> Webhook:
            with self._sessions() as session:
                return _to_model(self._row(session, webhook_id))

        return guarded(self._engine, run)

    def list(self, *, active_only: bool = False) -> list[Webhook]:
        """Every webhook (or every active one), by id."""

        def run() -> list[Webhook]:
            query = select(WebhookRow).order_by(WebhookRow.id)
            if active_only:
                query = query.where(WebhookRow.active.is_(True))
            with self._sessions() as session:
                return [webhook for row in session.scalars(query) if (webhook := _valid_or_none(row))]

        return guarded(self._engine, run)

    def update(self, webhook_id: int, **changes: Any) -> Webhook:
        """Apply ``changes`` (validated together with the unchanged fields) and return the result."""

        def run() -> Webhook:
            with session_scope(self._sessions) as session:
                row = self._row(session, webhook_id)
                _fill(row, _to_model(row).with_changes(**changes))
                row.updated_at = self._clock()
                session.flush()
                return _to_model(row)

        return guarded(self._engine, run)

    def delete(self, webhook_id: int) -> Webhook:
        """Delete a webhook and return what it was; its delivery log stays."""

        def run() -> Webhook:
            with session_scope(self._sessions) as session:
                row = self._row(session, webhook_id)
                gone = _to_model(row)
                session.delete(row)
                return gone

        return guarded(self._engine, run)

    @staticmethod
    def _row(session: Session, webhook_id: int) -> WebhookRow:
        row = session.get(WebhookRow, webhook_id)
        if row is None:
            raise NotFoundError(f"no webhook with id {webhook_id}")
        return row
