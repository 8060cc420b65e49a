"""Webhook subscriptions in the SQL store: create, read, update, delete, rotate the secret.

Secrets and custom header values go through a ``SecretBox``: encrypted at rest when encryption keys are
configured, as given otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from assethooks.clock import Clock, utc_now
from assethooks.errors import InvalidWebhookError, NotFoundError
from assethooks.secrets import SecretBox
from assethooks.store.db import guarded, session_scope
from assethooks.store.models import WebhookRow
from schemas.webhooks import Webhook, WebhookSpec, first_problem, validate_webhook

log = logging.getLogger(__name__)
_SPEC = frozenset(WebhookSpec.model_fields)


class WebhookStore:
    """Reads and writes webhook subscriptions; every write is one transaction."""

    def __init__(self, engine: Engine, clock: Clock = utc_now, box: SecretBox | None = None) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._clock = clock
        self._box = box or SecretBox()

    def create(self, spec: WebhookSpec) -> Webhook:
        """Save a new webhook and return it with its id."""

        def run() -> Webhook:
            now = self._clock()
            row = WebhookRow(created_at=now, updated_at=now)
            self._fill(row, spec)
            with session_scope(self._sessions) as session:
                session.add(row)
                session.flush()
                return self._to_model(row)

        return guarded(self._engine, run)

    def get(self, webhook_id: int) -> Webhook:
        """The webhook with ``webhook_id``; ``NotFoundError`` when there is none."""

        def run() -> Webhook:
            with self._sessions() as session:
                return self._to_model(self._row(session, webhook_id))

        return guarded(self._engine, run)

    def name(self, webhook_id: int) -> str:
        """The name of the webhook with ``webhook_id`` (nothing else read); ``NotFoundError`` when none."""

        def run() -> str:
            with self._sessions() as session:
                return self._row(session, webhook_id).name

        return guarded(self._engine, run)

    def ids(self) -> set[int]:
        """The ids of every webhook (nothing decrypted)."""

        def run() -> set[int]:
            with self._sessions() as session:
                return set(session.scalars(select(WebhookRow.id)))

        return guarded(self._engine, run)

    def list(self, *, active_only: bool = False) -> list[Webhook]:
        """Every webhook (or every active one), by id; a row that no longer validates is left out."""

        def run() -> list[Webhook]:
            query = select(WebhookRow).order_by(WebhookRow.id)
            if active_only:
                query = query.where(WebhookRow.active.is_(True))
            with self._sessions() as session:
                return [webhook for row in session.scalars(query) if (webhook := self._valid_or_none(row))]

        return guarded(self._engine, run)

    def update(self, webhook_id: int, /, **changes: Any) -> Webhook:
        """Apply ``changes`` (validated together with the unchanged fields) and return the result."""
        unknown = [name for name in changes if name not in _SPEC]
        if unknown:  # names may come from a request body: refused before any of them is used
            raise InvalidWebhookError(f"unknown field {unknown[0]!r}")

        def run() -> Webhook:
            with session_scope(self._sessions) as session:
                row = self._row(session, webhook_id)
                # From the stored values, not the model: a row an older version saved with a value no
                # longer accepted can be mended this way.
                spec_fields = {name: value for name, value in self._fields(row).items() if name in _SPEC}
                spec = validate_webhook(**{**spec_fields, **changes})
                self._fill(row, spec)
                if changes.get("active") is True:  # switched on again: its failing past is over
                    row.disabled_reason = row.failing_since = None
                plain = spec.plain()
                if (plain["secret"], plain["signature"]) != (spec_fields["secret"], spec_fields["signature"]):
                    row.previous_secret = row.previous_secret_until = None  # replaced at once: no grace
                row.updated_at = self._clock()
                session.flush()
                return self._to_model(row)

        return guarded(self._engine, run)

    def rotate_secret(self, webhook_id: int, new_secret: str, grace: timedelta) -> Webhook:
        """Make ``new_secret`` the secret; the current one keeps signing beside it for ``grace``."""

        def run() -> Webhook:
            with session_scope(self._sessions) as session:
                row = self._row(session, webhook_id)
                current = self._to_model(row)
                if current.secret is None:
                    raise InvalidWebhookError(
                        f"webhook {webhook_id} has no secret to rotate; set one with update"
                    )
                self._fill(row, current.with_changes(secret=new_secret))
                now = self._clock()
                row.previous_secret = self._box.seal(current.secret.get_secret_value()) if grace else None
                row.previous_secret_until = now + grace if grace else None
                row.updated_at = now
                session.flush()
                return self._to_model(row)

        return guarded(self._engine, run)

    def record_health(
        self,
        healthy: Iterable[int],
        failing: Mapping[int, datetime],
        circuits: Mapping[int, tuple[datetime | None, datetime]] | None = None,
    ) -> None:
        """Note webhooks that just succeeded (no longer failing, circuit closed), those that fail (failing
        since the given time, unless they already were), and circuits that changed: open until a time, or
        closed (``None``), at a time; a change older than the one kept is ignored."""
        ok, bad, changes = list(healthy), dict(failing), dict(circuits or {})

        def run() -> None:
            with self._engine.begin() as connection:
                if ok:  # a success anywhere closes the circuit: older reports of it opening no longer count
                    connection.execute(
                        update(WebhookRow)
                        .where(WebhookRow.id.in_(ok))
                        .values(failing_since=None, circuit_open_until=None, circuit_changed_at=self._clock())
                    )
                for webhook_id, (open_until, at) in sorted(changes.items()):  # one lock order
                    connection.execute(
                        update(WebhookRow)
                        .where(
                            WebhookRow.id == webhook_id,
                            (WebhookRow.circuit_changed_at.is_(None)) | (WebhookRow.circuit_changed_at <= at),
                        )
                        .values(circuit_open_until=open_until, circuit_changed_at=at)
                    )
                for webhook_id, since in bad.items():
                    connection.execute(
                        update(WebhookRow)
                        .where(WebhookRow.id == webhook_id, WebhookRow.failing_since.is_(None))
                        .values(failing_since=since)
                    )

        guarded(self._engine, run)

    def disable(self, webhook_id: int, reason: str) -> Webhook | None:
        """Switch an active webhook off and say why; ``None`` when it was already off or is gone."""

        def run() -> Webhook | None:
            with session_scope(self._sessions) as session:
                row = session.get(WebhookRow, webhook_id)
                if row is None or not row.active:
                    return None
                row.active, row.disabled_reason, row.updated_at = False, reason, self._clock()
                session.flush()
                return self._to_model(row)

        return guarded(self._engine, run)

    def failing_before(self, moment: datetime) -> Sequence[Webhook]:
        """The active webhooks failing continuously since before ``moment``."""

        def run() -> Sequence[Webhook]:
            query = select(WebhookRow).where(WebhookRow.active.is_(True), WebhookRow.failing_since < moment)
            with self._sessions() as session:
                return [webhook for row in session.scalars(query) if (webhook := self._valid_or_none(row))]

        return guarded(self._engine, run)

    def reseal(self) -> int:
        """Store every secret and header value again in the box's form (to start or rotate encryption)."""

        def run() -> int:
            with session_scope(self._sessions) as session:
                rows = list(session.scalars(select(WebhookRow)))
                for row in rows:
                    webhook = self._to_model(row)
                    self._fill(row, webhook)
                    if webhook.previous_secret is not None:
                        row.previous_secret = self._box.seal(webhook.previous_secret.get_secret_value())
                return len(rows)

        return guarded(self._engine, run)

    def delete(self, webhook_id: int) -> Webhook:
        """Delete a webhook and return what it was; its delivery log stays."""

        def run() -> Webhook:
            with session_scope(self._sessions) as session:
                row = self._row(session, webhook_id)
                try:
                    gone = self._to_model(row)
                except InvalidWebhookError:  # what can be shown of a row no longer valid
                    gone = Webhook.model_construct(
                        **{**self._fields(row), "events": None, "secret": None, "headers": {}}
                    )
                session.delete(row)
                return gone

        return guarded(self._engine, run)

    @staticmethod
    def _row(session: Session, webhook_id: int) -> WebhookRow:
        row = session.get(WebhookRow, webhook_id)
        if row is None:
            raise NotFoundError(f"no webhook with id {webhook_id}")
        return row

    def _fields(self, row: WebhookRow) -> dict[str, Any]:
        """A row's values, secrets decrypted."""
        opened = self._box.open
        return {
            "id": row.id,
            "name": row.name,
            "url": row.url,
            "events": row.events,
            "secret": None if row.secret is None else opened(row.secret),
            "headers": {name: opened(value) for name, value in row.headers.items()},
            "active": row.active,
            "signature": row.signature,
            "rate_limit": row.rate_limit,
            "filter": row.filter,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
            "previous_secret": None if row.previous_secret is None else opened(row.previous_secret),
            "previous_secret_until": row.previous_secret_until,
            "disabled_reason": row.disabled_reason,
            "failing_since": row.failing_since,
        }

    def _to_model(self, row: WebhookRow) -> Webhook:
        """The row as a webhook; ``InvalidWebhookError`` for a row that an older version saved with a
        value no longer accepted (it says which, and how to mend it)."""
        try:
            return Webhook(**self._fields(row))
        except ValidationError as exc:
            raise InvalidWebhookError(
                f"webhook {row.id} is stored with a value no longer accepted ({first_problem(exc)}); "
                "change it with `webhooks update` or delete it"
            ) from None

    def _valid_or_none(self, row: WebhookRow) -> Webhook | None:
        try:
            return self._to_model(row)
        except InvalidWebhookError as exc:
            log.error("%s; it is ignored until then", exc)
            return None

    def _fill(self, row: WebhookRow, spec: WebhookSpec) -> None:
        plain = spec.plain()
        seal = self._box.seal
        row.name, row.url, row.events = plain["name"], plain["url"], plain["events"]
        row.secret = None if plain["secret"] is None else seal(plain["secret"])
        row.headers = {name: seal(value) for name, value in plain["headers"].items()}
        row.active, row.signature = plain["active"], plain["signature"]
        row.rate_limit, row.filter = plain["rate_limit"], plain["filter"]
